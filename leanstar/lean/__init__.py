"""Proof checking: the ProofEnv interface, its REPL / LeanDojo / replay backends, the pool, the verifier."""
