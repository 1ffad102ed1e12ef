"""Proof search: sampling search (Lean-STaR) and best-first search, and the runner over many theorems."""
