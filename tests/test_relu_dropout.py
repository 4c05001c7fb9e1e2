"""fian_fast.ops.relu_dropout (the FFN's ReLU + Dropout of eq. 7 with a one-tensor backward)
against its reference, F.dropout(F.relu(h)), eager and compiled, and inside the model."""
import pytest
import torch

from fian_fast import FIAN, FIANConfig, ops, reference

from compiled_graphs import aot_graphs, saved_dtypes, targets

SHAPES = [(1,), (3, 7), (2, 5, 13), (0, 4), (2, 0, 3)]


def _pair(h, p, training, seed, grad):
    """(output, dL/dh) of the op and of the reference on the same random stream."""
    results = []
    for fn in (ops.relu_dropout, reference.relu_dropout):
        x = h.detach().clone().requires_grad_(True)
        torch.manual_seed(seed)
        y = fn(x, p, training)
        y.backward(grad)
        results.append((y.detach(), x.grad))
    return results


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p,training", [(0.1, True), (0.5, True), (0.0, True), (0.1, False), (1.0, True)])
def test_bitwise_equal_to_the_reference_forward_and_backward(dtype, shape, p, training):
    """Same seed, same draws: output and gradient equal to the last bit (the backward is the same
    product, grad * mask * scale, written from the output)."""
    h = torch.randn(shape, dtype=torch.float64).to(dtype)
    grad = torch.randn(shape, dtype=torch.float64).to(dtype)
    (y, g), (y_ref, g_ref) = _pair(h, p, training, 1234, grad)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref)
    if training and p == 1.0:
        assert not y.any() and not g.any()


def test_boundaries_zero_negative_zero_tiny_and_huge():
    """Inputs exactly at the ReLU's threshold (0, -0), subnormals, the largest float and inf."""
    tiny = torch.finfo(torch.float32).tiny / 4                        # subnormal
    big = torch.finfo(torch.float32).max
    h = torch.tensor([0.0, -0.0, tiny, -tiny, big, -big, float("inf"), float("-inf"), 1.0, -1.0] * 20)
    grad = torch.linspace(-3, 3, h.numel())
    for p, training in [(0.0, True), (0.3, True), (0.3, False)]:
        (y, g), (y_ref, g_ref) = _pair(h, p, training, 7, grad)
        # a dropped inf is inf * 0 = NaN in both; it passes no gradient in both
        torch.testing.assert_close(y, y_ref, atol=0, rtol=0, equal_nan=True, msg=str((p, training)))
        assert torch.equal(g, g_ref), (p, training)
    # h = 0 passes no gradient, as ReLU's backward (threshold_backward) has it
    (_, g), _ = _pair(h, 0.0, False, 0, grad)
    assert g[0] == 0 and g[1] == 0 and g[2] == grad[2]


def test_gradcheck_and_opcheck():
    h = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    h_shift = (h.detach() + torch.sign(h.detach()) * 0.1).requires_grad_(True)   # away from the kink
    assert torch.autograd.gradcheck(lambda x: ops.relu_dropout(x, 0.0, True), (h_shift,))
    torch.manual_seed(3)
    y = ops.relu_dropout(h, 0.25, True).detach()
    grad = torch.randn_like(y)
    torch.library.opcheck(torch.ops.fian_fast.relu_dropout_backward.default, (grad, y, 0.25))
    torch.library.opcheck(torch.ops.fian_fast.relu_dropout_backward.default, (grad.float(), y.float(), 0.0))


def test_the_backward_keeps_only_the_output():
    h = torch.randn(5, 8, requires_grad=True)
    y = ops.relu_dropout(h, 0.2, True)
    saved = y.grad_fn.saved_tensors
    assert len(saved) == 1 and saved[0].dtype == h.dtype and torch.equal(saved[0], y)


@pytest.mark.parametrize("args,match", [
    ((torch.ones(3), 1.5, True), r"fian_fast.ops.relu_dropout: p should be in \[0, 1\], got 1.5"),
    ((torch.ones(3), -0.1, True), r"p should be in \[0, 1\], got -0.1"),
    ((torch.ones(3), float("nan"), True), r"p should be in \[0, 1\], got nan"),
    ((torch.ones(3), 0.1, 1), r"training should be a bool, got 1"),
    ((torch.ones(3, dtype=torch.int64), 0.1, True), r"h should be a floating tensor, got torch.int64"),
    (([1.0, 2.0], 0.1, True), r"h should be a torch.Tensor, got list"),
])
def test_bad_arguments_are_named(args, match):
    with pytest.raises(ValueError, match=match):
        ops.relu_dropout(*args)


def test_registered_backward_checks_its_arguments():
    op = torch.ops.fian_fast.relu_dropout_backward
    with pytest.raises(ValueError, match=r"fian_fast::relu_dropout_backward: out should have the shape of grad"):
        op(torch.ones(3), torch.ones(4), 0.5)
    with pytest.raises(ValueError, match=r"out should be torch.float32 on cpu like grad, got torch.float64"):
        op(torch.ones(3), torch.ones(3, dtype=torch.float64), 0.5)
    with pytest.raises(ValueError, match=r"fian_fast::relu_dropout_backward: p should be in \[0, 1\], got 1.5"):
        op(torch.ones(3), torch.ones(3), 1.5)


def test_compiled_saves_one_float_tensor_and_no_mask():
    """Under torch.compile the backward is the one opaque op and the forward saves no bool mask
    (the reference's graph saves one)."""
    h = torch.randn(6, 10, requires_grad=True)
    (forward, backward), _ = aot_graphs(lambda x: ops.relu_dropout(x * 2, 0.1, True), h)
    assert "fian_fast.relu_dropout_backward.default" in targets(backward)
    assert saved_dtypes(forward) == [torch.float32]
    (forward, _), _ = aot_graphs(lambda x: reference.relu_dropout(x * 2, 0.1, True), h)
    assert torch.bool in saved_dtypes(forward)


@pytest.mark.slow
def test_compiled_inductor_matches_eager():
    """Inductor's dropout draws its own numbers: without dropout the compiled op equals eager to
    the bit; with dropout the gradient is the output's pattern times the scale."""
    h = torch.randn(3, 9, 17, requires_grad=True)
    for p, training in [(0.0, True), (0.3, False)]:
        torch._dynamo.reset()
        y = torch.compile(lambda x: ops.relu_dropout(x, p, training), fullgraph=True)(h)
        y.backward(torch.ones_like(y))
        assert torch.equal(y, torch.relu(h)) and torch.equal(h.grad, (h > 0).float())
        h.grad = None
    torch._dynamo.reset()
    y = torch.compile(lambda x: ops.relu_dropout(x, 0.5, True), fullgraph=True)(h)
    y.backward(torch.ones_like(y))
    kept = y > 0
    assert torch.equal(h.grad, kept.float() * 2.0)
    assert torch.equal(y[kept], 2.0 * h[kept]) and not (kept & (h <= 0)).any()


def test_model_fast_backend_matches_the_reference_in_training():
    """The whole model, dropout on, same seed: both backends draw the same dropout masks in the
    same order, so losses and gradients agree to the rounding of the fused CGA (a different mask
    anywhere would move them far more)."""
    cfg = FIANConfig.preset("synthetic", video_dim=16, word_dim=12, num_frames=24, max_query_length=8,
                            hidden_size=32, num_heads=4, ffn_size=64, dropout=0.3, window_sizes=(4, 8, 12),
                            stride_ratio=0.25)
    torch.manual_seed(0)
    ref = FIAN(cfg).train()
    fast = FIAN(cfg, backend="fast").train()
    fast.load_state_dict(ref.state_dict())
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in ref.named_parameters()]
    x = (torch.randn(2, 24, 16), torch.tensor([24, 13]), torch.randn(2, 8, 12), torch.tensor([8, 3]))
    gt = torch.tensor([[0.1, 0.4], [0.2, 0.7]])
    losses = []
    for model in (ref, fast):
        torch.manual_seed(99)
        loss = model.loss(model(*x), gt).total
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(ref.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cuda_bitwise_equal_to_the_reference(dtype, p):
    """CUDA's dropout is the fused native_dropout (its own rounding of the scale): same draws,
    same output and gradient to the bit."""
    h = torch.randn(3, 37, 129, device="cuda").to(dtype)
    grad = torch.randn(3, 37, 129, device="cuda").to(dtype)
    (y, g), (y_ref, g_ref) = _pair(h, p, True, 5, grad)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref)
