"""Q-Sparse: top-K activation sparsity with the straight-through estimator, and fast sparse decoding.

- `topk`      exact per-token top-K (and N:M) sparsification with the straight-through estimator
- `qsparse`   `apply_qsparse(model, cfg)` patches a Qwen2 / Llama-style model; `load_model(path)`
              loads a checkpoint with its saved Q-Sparse settings restored
- `schedule`  the training hook (`prepare_qsparse_training`) and the keep-ratio warmup callback
- `measure`   activated parameters, measured from the inputs each projection receives
- `texts`     text sources to score on, and their tokenization
- `quality`   mean token loss dense vs. keep-ratios
- `stats`     the `leanstar sparse stats` / `leanstar sparse eval` commands

Nothing heavy is imported here; import the submodule you need.
"""
