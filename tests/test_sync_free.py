"""The training step reads nothing back from the device: host reads (``.item()``, ``bool(t)``,
``.cpu()``, ``.tolist()``, ``.numpy()``) counted on the CPU with a dispatch mode, and on a GPU with
``torch.cuda.set_sync_debug_mode("error")``; fixed-shape batches; the step compiled whole and
replayed from a CUDA graph."""
import pytest
import torch

from fian_fast import FIAN, FIANConfig
from fian_fast._host_reads import count_host_reads
from fian_fast.data.dataset import collate
from fian_fast.train_step import TrainStep, make_optimizer, pad_batch


def tiny(**kw) -> FIANConfig:
    """Heads of 16 features: the smallest the Triton CGA's dots take on a GPU."""
    values = dict(num_frames=16, max_query_length=6, hidden_size=32, num_heads=2, ffn_size=64,
                  window_sizes=(4, 8), dropout=0.0)
    values.update(kw)
    return FIANConfig.preset("synthetic", **values)


def make_batch(cfg, video_lengths, query_lengths, seed=0):
    """A batch through the loader's ``collate`` (which checks its values on the host)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for b, (vl, ql) in enumerate(zip(video_lengths, query_lengths)):
        video = torch.randn(cfg.num_frames, cfg.video_dim, generator=g)
        video[vl:] = 0
        start = float(torch.rand((), generator=g)) * 0.5
        gt = torch.tensor([start, start + 0.4])
        items.append((video, vl, torch.randn(ql, cfg.word_dim, generator=g), gt, 10.0 + b, f"v{b}", "s"))
    return collate(items)


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


# ---------------------------------------------------------------------------------- the counter
def test_counter_counts_every_kind_of_host_read():
    t = torch.arange(4.0)
    with count_host_reads() as reads:
        t.sum().item()
        bool(t.any())
        int(t[1])
        t.tolist()
        t.cpu()
        t.numpy()
    assert reads.scalar_reads == 3 and reads.copies == 3 and reads.total == 6
    assert reads.ops > 0 and reads.by_op["_local_scalar_dense"] == 3


def test_public_api_checks_values_and_the_trusted_path_reads_nothing():
    cfg = tiny()
    model = FIAN(cfg, backend="fast")
    b = make_batch(cfg, [16, 9], [6, 2])
    with count_host_reads() as checked:
        out = model(*b.model_inputs())
        model.loss(out, b.gt)
    with count_host_reads() as trusted:
        out = model(*b.model_inputs(), validate=False)
        model.loss(out, b.gt, validate=False)
    assert checked.total >= 3     # lengths, finite inputs, ground truth: one read each
    assert trusted.total == 0, trusted.by_op.get("_local_scalar_dense")


# ------------------------------------------------------------------------------- the CPU step
@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize("grad_clip", [0.0, 1.0], ids=["no-clip", "clip"])
def test_training_step_makes_no_host_read(backend, grad_clip):
    """The trainer's step as it runs (forward, loss, backward, clipping, fused Adam), the first
    step (which creates Adam's state) included."""
    cfg = tiny()
    model = FIAN(cfg, backend=backend)
    step = TrainStep(model, make_optimizer(model, 1e-3, 0.0), grad_clip=grad_clip)
    before = params_of(model)
    for seed in range(2):
        b = make_batch(cfg, [16, 9, 4], [6, 2, 5], seed=seed)
        with count_host_reads() as reads:
            losses = step(b)
        assert reads.total == 0, (reads.scalar_reads, reads.copies)
        assert reads.ops > 100          # the step ran under the counter
        assert torch.isfinite(losses.total)
    assert any(not torch.equal(p, q) for p, q in zip(before, model.parameters()))


def test_padded_short_batch_trains_like_the_short_batch():
    """pad_batch: query padded to max_query_length, two padding samples masked out of the loss;
    loss and gradients equal those of the 3-sample batch."""
    cfg = tiny()
    b = make_batch(cfg, [16, 9, 4], [5, 2, 3])
    padded, mask = pad_batch(b, 5, cfg.max_query_length)
    assert padded.query.shape == (5, cfg.max_query_length, cfg.word_dim) and padded.video.shape[0] == 5
    assert mask.tolist() == [True, True, True, False, False]
    results = []
    for batch, m in ((b, None), (padded, mask)):
        model = FIAN(cfg, backend="fast")
        model.load_state_dict(FIAN(cfg).state_dict() if not results else results[0][2])
        losses = model.loss(model(*batch.model_inputs(), validate=False), batch.gt, validate=False, sample_mask=m)
        losses.total.backward()
        results.append((losses, [p.grad for p in model.parameters()], model.state_dict()))
    (la, ga, _), (lb, gb, _) = results
    for x, y in zip(la, lb):
        torch.testing.assert_close(y, x, atol=1e-6, rtol=1e-5)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(y, x, atol=1e-6, rtol=1e-5)


def test_pad_batch_refuses_a_batch_larger_than_the_graph():
    cfg = tiny()
    with pytest.raises(ValueError, match="pad_batch: batch should hold at most batch_size=2 samples, got 3"):
        pad_batch(make_batch(cfg, [16, 9, 4], [5, 2, 3]), 2, cfg.max_query_length)


def test_collate_checks_values_on_the_host():
    cfg = tiny()
    b = make_batch(cfg, [16, 9], [5, 2])
    items = [(b.video[i], int(b.video_lengths[i]), b.query[i, :int(b.query_lengths[i])], b.gt[i], 3.0, "v", "s")
             for i in range(2)]
    items[1] = items[1][:3] + (torch.tensor([0.75, 0.25]),) + items[1][4:]
    with pytest.raises(ValueError, match=r"collate: gt should have start <= end, got \[0.75, 0.25\] at row 1"):
        collate(items)
    items[1] = items[1][:1] + (17,) + items[1][2:]
    with pytest.raises(ValueError, match=r"collate: video_lengths should lie in \[1, 16\], got values in \[16, 17\]"):
        collate(items)


# ---------------------------------------------------------------------------------- compile
def test_compiled_forward_and_loss_match_eager_on_cpu():
    """torch.compile(fullgraph=True, inductor) of the step's forward + loss with the fast backend:
    same losses and gradients as eager. (A dispatch mode cannot watch a compiled call: dynamo
    refuses to run under one. fullgraph=True is the check there: a host read is a graph break.)"""
    cfg = tiny()
    model = FIAN(cfg, backend="fast")
    b = make_batch(cfg, [16, 5, 3], [6, 2, 3])
    padded, mask = pad_batch(b, 4, cfg.max_query_length)
    eager = TrainStep(model, make_optimizer(model, 1e-3, 0.0))._eager_forward_loss
    compiled = torch.compile(eager, fullgraph=True)
    inputs = (padded.video, padded.video_lengths, padded.query, padded.query_lengths, padded.gt, mask)
    params = list(model.parameters())
    want = eager(*inputs)
    want_grads = torch.autograd.grad(want.total, params, allow_unused=True)
    got = compiled(*inputs)   # fullgraph: a host read would have been a graph break, an error here
    got_grads = torch.autograd.grad(got.total, params, allow_unused=True)
    for x, y in zip(want, got):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-4)
    for p, (x, y) in zip(model.state_dict(), zip(want_grads, got_grads)):
        if x is None:
            assert y is None, p
        else:
            torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-4, msg=p)


def test_train_with_compile_end_to_end_at_200_frames(tmp_path):
    """``train --compile`` on data of TACoS's 200 frames (the BiGRUs are single nodes of the graph,
    whatever the frames: benchmarks/test_bench_compile.py times the compile)."""
    from fian_fast.data import load_split
    from fian_fast.train import TrainOptions, train

    cfg = tiny(num_frames=200)
    tr, _ = load_split("synthetic", "train", cfg.num_frames, cfg.max_query_length, video_dim=cfg.video_dim,
                       synthetic_sizes=(5, 2, 2))
    va, _ = load_split("synthetic", "val", cfg.num_frames, cfg.max_query_length, video_dim=cfg.video_dim,
                       vocab=tr.vocab, synthetic_sizes=(5, 2, 2))
    opts = TrainOptions(out_dir=str(tmp_path), epochs=1, batch_size=4, progress=False, log_every=1,
                        backend="fast", step_mode="compile")
    summary = train(cfg, tr, va, opts)
    assert summary["steps"] == -(-len(tr) // 4)      # the short last batch is padded, not dropped
    assert len(tr) % 4, "the data should end in a short batch"
    log = (tmp_path / "log.jsonl").read_text().splitlines()
    assert sum('"event": "step"' in line for line in log) == summary["steps"]


# ---------------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_cuda_step_never_synchronizes(amp):
    cfg = FIANConfig.preset("tacos", dropout=0.1)
    model = FIAN(cfg, backend="fast").cuda()
    step = TrainStep(model, make_optimizer(model, 1e-4, 0.0), grad_clip=cfg.grad_clip, amp=amp)
    b = make_batch(cfg, [200, 117, 64, 9], [30, 12, 5, 1])
    padded, mask = pad_batch(b, 4, cfg.max_query_length)
    padded, mask = padded.to("cuda"), mask.cuda()
    step(padded, mask)                           # first call: Triton compiles, Adam creates its state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            losses = step(padded, mask)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(losses.total).item()


def _three_steps(cfg, mode, batches, state):
    model = FIAN(cfg, backend="fast").cuda()
    model.load_state_dict(state)
    step = TrainStep(model, make_optimizer(model, 1e-3, 0.0, mode), grad_clip=cfg.grad_clip, mode=mode, warmup=1)
    losses = [step(b, m).total.clone() for b, m in batches]
    return torch.stack(losses), model


@pytest.mark.cuda
def test_cuda_graph_step_matches_eager_steps():
    """Warm-up, capture, then replays: the graph's steps equal eager steps on the same batches
    (dropout off), optimizer included."""
    cfg = tiny(video_dim=32)
    state = FIAN(cfg).state_dict()
    batches = []
    for seed, (vl, ql) in enumerate([([16, 9, 4], [6, 2, 5]), ([7, 16], [1, 6]), ([16, 3, 8], [2, 2, 4]),
                                     ([5, 6, 7], [3, 4, 5])]):
        b, m = pad_batch(make_batch(cfg, vl, ql, seed), 3, cfg.max_query_length)
        batches.append((b.to("cuda"), m.cuda()))
    eager, eager_model = _three_steps(cfg, "eager", batches, state)
    graph, graph_model = _three_steps(cfg, "cuda-graphs", batches, state)
    torch.testing.assert_close(graph, eager, atol=1e-5, rtol=1e-4)
    for (name, p), q in zip(eager_model.named_parameters(), graph_model.parameters()):
        torch.testing.assert_close(q, p, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.cuda
def test_cuda_compiled_forward_and_loss_match_eager():
    """fullgraph compile with the Triton CGA on CUDA."""
    cfg = FIANConfig.preset("charades", dropout=0.0)
    model = FIAN(cfg, backend="fast").cuda()
    b, m = pad_batch(make_batch(cfg, [64, 17, 33], [20, 3, 9]), 3, cfg.max_query_length)
    b, m = b.to("cuda"), m.cuda()
    eager = TrainStep(model, make_optimizer(model, 1e-3, 0.0))._eager_forward_loss
    inputs = (b.video, b.video_lengths, b.query, b.query_lengths, b.gt, m)
    want = eager(*inputs)
    got = torch.compile(eager, fullgraph=True)(*inputs)
    for x, y in zip(want, got):
        torch.testing.assert_close(y, x, atol=1e-4, rtol=1e-3)


@pytest.mark.cuda
def test_cuda_compiled_step_runs_cudnn_rnn_and_no_per_step_gru_kernels():
    """The compiled TACoS step (forward + loss + backward) under the profiler: each BiGRU direction
    is one cuDNN RNN call forward, one recomputed for the backward and one cuDNN backward; no
    GRU-cell op or kernel runs step by step (what ATen's non-cuDNN GRU and an unrolled graph do)."""
    from torch.autograd import DeviceType

    from fian_fast.model.encoders import BiGRU

    cfg = FIANConfig.preset("tacos", dropout=0.0)
    model = FIAN(cfg, backend="fast").cuda()
    b, m = pad_batch(make_batch(cfg, [200, 117, 64], [30, 12, 5]), 3, cfg.max_query_length)
    b, m = b.to("cuda"), m.cuda()
    step = TrainStep(model, make_optimizer(model, 1e-4, 0.0), mode="compile")
    for _ in range(2):                           # compile, then a warm step
        step(b, m)
    torch.cuda.synchronize()
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        step(b, m)
        torch.cuda.synchronize()
    events = prof.events()
    ops = [e.name for e in events if e.device_type == DeviceType.CPU]
    kernels = [e.name for e in events if e.device_type == DeviceType.CUDA]
    kernels += [k.name for e in events for k in getattr(e, "kernels", ())]
    assert kernels, "the profiler saw no CUDA kernel"
    directions = 2 * sum(isinstance(mod, BiGRU) for mod in model.modules())
    assert directions == 6
    assert ops.count("aten::_cudnn_rnn") == 2 * directions, sorted(set(o for o in ops if "rnn" in o or "gru" in o))
    assert ops.count("aten::_cudnn_rnn_backward") == directions
    assert not [o for o in ops if "gru_cell" in o], sorted(set(o for o in ops if "gru" in o))
    assert not [k for k in kernels if "gru_cell" in k.lower()]


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["cuda-graphs", "compile"])
def test_cuda_train_end_to_end(tmp_path, mode):
    from fian_fast.data import load_split
    from fian_fast.train import TrainOptions, train

    cfg = tiny()
    tr, _ = load_split("synthetic", "train", cfg.num_frames, cfg.max_query_length, video_dim=cfg.video_dim,
                       synthetic_sizes=(11, 2, 2))
    opts = TrainOptions(out_dir=str(tmp_path), epochs=2, batch_size=4, progress=False, log_every=1,
                        device="cuda", backend="fast", step_mode=mode)
    summary = train(cfg, tr, None, opts)
    assert summary["steps"] == 2 * -(-len(tr) // 4)


def test_cuda_graphs_need_one_cuda_device(tmp_path):
    from fian_fast.train import TrainOptions, train

    with pytest.raises(ValueError, match="step mode cuda-graphs needs one CUDA device and one process, got device cpu"):
        train(tiny(), None, None, TrainOptions(out_dir=str(tmp_path), step_mode="cuda-graphs"))
    with pytest.raises(ValueError, match="step_mode should be one of"):
        train(tiny(), None, None, TrainOptions(out_dir=str(tmp_path), step_mode="jit"))


def test_cli_step_flags(monkeypatch, tmp_path):
    """--compile and --cuda-graphs reach TrainOptions.step_mode, and exclude each other."""
    import fian_fast.train as train_module
    from fian_fast import cli

    seen = {}

    def fake_train(cfg, train_ds, val_ds, opts, dist_info=None):
        seen["mode"] = opts.step_mode
        raise SystemExit(0)

    monkeypatch.setattr(train_module, "train", fake_train)
    for flag, mode in (("--compile", "compile"), (None, "eager")):
        argv = ["train", "--dataset", "synthetic", "--out", str(tmp_path), "--synthetic-size", "4,2,2", "--quiet"]
        with pytest.raises(SystemExit):
            cli.main(argv + ([flag] if flag else []))
        assert seen.pop("mode") == mode
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--dataset", "synthetic", "--out", str(tmp_path), "--compile", "--cuda-graphs"])
    assert exc.value.code == 2
