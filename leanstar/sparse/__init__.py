"""Q-Sparse: top-K activation sparsity with the straight-through estimator, and fast sparse decoding."""
