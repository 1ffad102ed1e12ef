/-
Lean sources of leanstar's Lake project. Building this library (`lake build`, run by
`leanstar lean setup`) checks that Mathlib from the cache loads and that a one-line theorem
elaborates on the pinned toolchain.
-/
import LeanstarEnv.SelfCheck
