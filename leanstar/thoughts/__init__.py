"""Thought synthesis: a teacher writes the thought that leads from a proof state to its tactic."""
