"""Golden tests of top-K / N:M sparsification and its straight-through estimator."""

from __future__ import annotations

import pytest
import torch

from leanstar.sparse.topk import keep_count, nm_mask, nm_ste, topk_mask, topk_ste

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def test_hand_computed_topk():
    x = torch.tensor([[1.0, -3.0, 2.0, 0.5], [0.25, 0.5, -0.75, 1.0]])
    assert topk_ste(x, 2).tolist() == [[0.0, -3.0, 2.0, 0.0], [0.0, 0.0, -0.75, 1.0]]
    assert topk_ste(x, 1).tolist() == [[0.0, -3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (3, 10), (2, 5, 33), (2, 1, 3, 64)])
def test_exactly_k_largest_kept(dtype, shape):
    torch.manual_seed(0)
    x = torch.randn(shape).to(dtype)
    for k in (1, shape[-1] // 2, shape[-1] - 1, shape[-1]):
        y = topk_ste(x, k)
        assert y.shape == x.shape and y.dtype == dtype
        kept = y != 0
        assert (kept.sum(-1) == k).all()
        assert torch.equal(y[kept], x[kept])  # signed values kept as they are
        smallest_kept = x.abs().masked_fill(~kept, float("inf")).amin(-1)
        largest_dropped = x.abs().masked_fill(kept, -1.0).amax(-1)
        assert (smallest_kept >= largest_dropped).all()


@pytest.mark.parametrize("capturing", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_still_keep_exactly_k(dtype, capturing, monkeypatch):
    """Also as a CUDA graph capture runs it: every row through the tie-breaking path."""
    from leanstar.sparse import topk

    monkeypatch.setattr(topk, "_capturing", lambda x: capturing)
    x = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0, 1.0], [0.0] * 6, [2.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    x = x.to(dtype)
    mask = topk_mask(x, 3)
    # Ties at the K-th largest magnitude go to the lowest feature index.
    assert mask.tolist() == [
        [True] * 3 + [False] * 3,
        [True] * 3 + [False] * 3,
        [True] * 3 + [False] * 3,
    ]
    assert topk_mask(x[2:], 4).tolist() == [[True] * 4 + [False] * 2]
    y = topk_ste(x, 3)
    assert ((y != 0).sum(-1) == torch.tensor([3, 0, 3])).all()


def test_keep_all_is_identity():
    x = torch.randn(4, 9, requires_grad=True)
    assert topk_ste(x, 9) is x
    assert nm_ste(torch.randn(2, 64), 32, 32).shape == (2, 64)


def test_keep_count():
    assert keep_count(100, 0.29) == 29  # 0.29 * 100 == 28.999999999999996 in floats
    assert keep_count(896, 0.5) == 448
    assert keep_count(4864, 0.7) == 3404
    assert keep_count(10, 1.0) == 10
    assert keep_count(10, 0.01) == 1
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="keep_ratio"):
            keep_count(10, bad)


def test_bad_k_is_an_error():
    with pytest.raises(ValueError, match="1 <= K <= 4"):
        topk_ste(torch.randn(2, 4), 5)
    with pytest.raises(ValueError, match="1 <= K"):
        topk_ste(torch.randn(2, 4), 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ste_gradient_is_dense_gradient_of_masked_product(dtype):
    torch.manual_seed(1)
    x = torch.randn(3, 5, 16, dtype=dtype, requires_grad=True)
    w = torch.randn(8, 16, dtype=dtype)
    g = torch.randn(3, 5, 8, dtype=dtype)
    (topk_ste(x, 6) @ w.T * g).sum().backward()
    # The definition: the gradient of (x * M) W^T with respect to its masked input, everywhere.
    masked = (x * topk_mask(x, 6)).detach().requires_grad_(True)
    (masked @ w.T * g).sum().backward()
    assert torch.equal(x.grad, masked.grad)
    assert torch.allclose(x.grad.float(), (g @ w).float(), rtol=1e-2, atol=1e-2)
    assert (x.grad != 0).float().mean() > 0.9  # dropped entries get a gradient too


def test_nm_pattern():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64)
    y = nm_ste(x, 16, 32)
    kept = (y != 0).reshape(2, 3, 2, 32)
    assert (kept.sum(-1) == 16).all()
    blocks, yb = x.reshape(2, 3, 2, 32).abs(), y.reshape(2, 3, 2, 32)
    for b in range(2):
        top = blocks[..., b, :].topk(16, dim=-1).indices.sort(-1).values
        got = (yb[..., b, :] != 0).nonzero()[:, -1].reshape(2, 3, 16)
        assert torch.equal(top, got)
    hand = torch.tensor([[4.0, -1.0, 3.0, 2.0, 0.0, -5.0, 1.0, 6.0]])
    assert nm_ste(hand, 2, 4).tolist() == [[4.0, 0.0, 3.0, 0.0, 0.0, -5.0, 0.0, 6.0]]


def test_nm_ste_gradient_and_errors():
    x = torch.randn(4, 32, requires_grad=True)
    g = torch.randn(4, 32)
    (nm_ste(x, 2, 4) * g).sum().backward()
    assert torch.equal(x.grad, g)
    with pytest.raises(ValueError, match="divisible"):
        nm_mask(torch.randn(2, 30), 2, 4)
    with pytest.raises(ValueError, match="0 < N <= M"):
        nm_mask(torch.randn(2, 32), 5, 4)


def triton_runs() -> bool:
    import importlib.util
    import os

    if importlib.util.find_spec("triton") is None:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


@pytest.mark.skipif(not triton_runs(), reason="needs triton and a GPU or TRITON_INTERPRET=1")
@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_backend_equals_torch_backend_bit_for_bit(dtype):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(5)
    x = torch.randn(2, 3, 40).to(dtype)
    x[0, 0, :8] = 1.0  # ties at the threshold
    x[1, 2] = 0.5  # a whole row tied
    for k in (1, 7, 20, 39):
        want = topk_ste(x, k, backend="torch")
        got = topk_ste(x.to(device), k, backend="triton").cpu()
        assert torch.equal(got, want), (dtype, k)
    g = torch.randn(2, 3, 40).to(dtype)
    xt = x.to(device).requires_grad_(True)
    (topk_ste(xt, 9, backend="triton") * g.to(device)).sum().backward()
    assert torch.equal(xt.grad.cpu(), g)  # straight-through


def test_backend_choice():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="backend must be"):
        topk_ste(x, 3, backend="cuda")
    with pytest.raises(ValueError, match="Triton top-K needs"):
        topk_ste(x.double(), 3, backend="triton")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_auto_backend_matches_cpu_exactly(dtype):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    torch.manual_seed(3)
    x = torch.randn(4, 7, 4864).to(dtype)  # bf16 / fp16 rows this wide always hold ties
    for k in (448, 2432):
        assert torch.equal(topk_ste(x.cuda(), k).cpu(), topk_ste(x, k))
