import Mathlib

/-! A theorem in the style of the bundled miniF2F statements (same header), proved here so that
`lake build` fails loudly if the pinned Mathlib cannot elaborate them. `leanstar lean setup`
proves the same statement again through the REPL backend and its whole-proof check. -/

set_option maxHeartbeats 400000

open BigOperators Real Nat Topology Rat

theorem leanstar_self_check : (2 : ℕ) + 2 = 4 := by
  norm_num
