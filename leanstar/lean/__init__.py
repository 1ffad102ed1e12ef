"""Proof checking: Lean judges every tactic and every finished proof.

env.py        the ProofEnv interface and its result types (start, run_tactic, verify)
factory.py    make_env(LeanConfig): repl | dojo | replay | auto
protocol.py   the Lean REPL's JSON protocol, typed
interpret.py  what a REPL answer means (new state, finished, Lean error, env failure)
process.py    one owned REPL process: timeouts, memory cap, kill by process group
pool.py       ReplPool: N REPL processes shared by many searches; rebuilds lost states
verifier.py   the whole-proof check's rules (errors, sorry, axioms, statement)
screen.py     the textual soundness screen (pure; `screen_proof`)
dojo.py       DojoEnv: the same interface over LeanDojo (the `dojo` extra)
replay.py     ReplayEnv: recorded LeanDojo states, "replay (not checked by Lean)"
setup.py      `leanstar lean setup` / `leanstar lean doctor`, the pinned versions
"""
