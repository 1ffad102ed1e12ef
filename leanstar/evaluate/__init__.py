"""Evaluation: pass@k, miniF2F runs and their reports."""
