import Lake
open Lake DSL

/-!
The Lake project leanstar checks proofs in. One pinned, mutually compatible set:
Lean, Mathlib and the Lean REPL at v4.24.0 (the version the bundled miniF2F statements,
yangky11/miniF2F-lean4, are written for). Keep `lean-toolchain` and the PINNED_* constants in
`leanstar/lean/setup.py` in step with the tags below; a test checks that they agree.

Set up with `leanstar lean setup` (elan, toolchain, `lake exe cache get`, `lake build repl`,
`lake build`, self-check); inspect with `leanstar lean doctor`.
-/

package leanstar_env where
  leanOptions := #[⟨`autoImplicit, false⟩]

require mathlib from git
  "https://github.com/leanprover-community/mathlib4" @ "v4.24.0"

require REPL from git
  "https://github.com/leanprover-community/repl" @ "v4.24.0"

@[default_target]
lean_lib LeanstarEnv where
  srcDir := "lean_env"
