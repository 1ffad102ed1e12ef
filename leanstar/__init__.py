"""leanstar: train Lean 4 theorem-proving agents that think before each tactic (Lean-STaR).

Stages: thought synthesis -> SFT -> expert iteration (sample, check in Lean, retrain) ->
miniF2F pass@k, with Q-Sparse provers for cheap sampling and a viewer for thought traces.
Importing the package is cheap; each stage imports its heavy dependencies when it runs.
"""

__version__ = "0.1.0"
