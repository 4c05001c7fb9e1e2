"""Every registered op ``torch.ops.fian_fast.*`` called directly with bad arguments: each check
(csrc/ops/checks.h for the compiled ops, fian_fast/_validation.py for the Triton ones) names the
op, the argument, what was expected and what it got. The dtype checks accept exactly the dtypes
the kernels dispatch: a dtype that passes a check must run."""
import pytest
import torch

import fian_fast  # noqa: F401  (loads the extension, registers the Triton ops)
from fian_fast import _cga
from fian_fast._extension import has_ops
from fian_fast.ops import CGAWeights
from fian_fast.ops.cga import cga_triton

needs_ext = pytest.mark.skipif(not has_ops(), reason="fian_fast._C is not built")

ops = torch.ops.fian_fast
f32, f64, f16, bf16 = torch.float32, torch.float64, torch.float16, torch.bfloat16


def seg(*shape, dtype=f32):
    s = torch.rand(*shape, 2, dtype=torch.float64)
    return torch.stack([s.min(-1).values, s.max(-1).values], -1).to(dtype)


def window_score_args(dtype=f32):
    x = torch.randn(2, 10, 4, dtype=dtype)
    return x, [torch.randn(3, 4, 4, dtype=dtype)], [torch.randn(3, dtype=dtype)], [4], [2]


def decode_args(dtype=f32):
    return (seg(5, dtype=dtype), torch.randn(2, 5, dtype=dtype), torch.randn(2, 5, 2, dtype=dtype),
            torch.tensor([10, 7]), torch.tensor([3.0, 4.0], dtype=dtype), 0.5, 3)


CASES = {
    # pairwise_iou
    "pairwise_iou-rank": (lambda: ops.pairwise_iou(seg(4), seg(2, 3)),
                          r"pairwise_iou: a should be a \[B, N, 2\] tensor of intervals, got shape \[4, 2\]"),
    "pairwise_iou-batch": (lambda: ops.pairwise_iou(seg(2, 4), seg(3, 3)),
                           "pairwise_iou: a and b should have one batch size, got 2 and 3"),
    "pairwise_iou-dtype": (lambda: ops.pairwise_iou(seg(2, 4), seg(2, 3, dtype=f64)),
                           r"pairwise_iou: b should have the dtype of a \(Float\), got Double"),
    "pairwise_iou-int": (lambda: ops.pairwise_iou(torch.ones(2, 4, 2, dtype=torch.int32),
                                                  torch.ones(2, 3, 2, dtype=torch.int32)),
                         "pairwise_iou: a should be float16, bfloat16, float32 or float64, got Int"),
    # window_score
    "window_score-rank": (lambda: ops.window_score(torch.randn(10, 4), *window_score_args()[1:]),
                          r"window_score: features should be \[B, T, C\], got shape \[10, 4\]"),
    "window_score-weight-shape": (lambda: ops.window_score(window_score_args()[0], [torch.randn(3, 4, 5)],
                                                           *window_score_args()[2:]),
                                  r"window_score: weights\[0\] should be \[3, 4, 4\], got \[3, 4, 5\]"),
    "window_score-weight-dtype": (lambda: ops.window_score(window_score_args()[0], [torch.randn(3, 4, 4, dtype=f64)],
                                                           *window_score_args()[2:]),
                                  r"window_score: weights\[0\] should be Float on cpu, got Double on cpu"),
    "window_score-biases": (lambda: ops.window_score(*window_score_args()[:2], [], [4], [2]),
                            r"window_score: biases should hold one tensor per scale \(1\), got 0"),
    "window_score-bias-shape": (lambda: ops.window_score(*window_score_args()[:2], [torch.randn(2)], [4], [2]),
                                r"window_score: biases\[0\] should hold 3 floating elements on cpu, got Float \[2\]"),
    "window_score-window": (lambda: ops.window_score(*window_score_args()[:3], [11], [2]),
                            r"window_score: window_sizes should lie in \[1, num_frames=10\], got \[11\]"),
    "window_score-int": (lambda: ops.window_score(torch.ones(2, 10, 4, dtype=torch.int64),
                                                  [torch.ones(3, 4, 4, dtype=torch.int64)],
                                                  [torch.ones(3, dtype=torch.int64)], [4], [2]),
                         "window_score: features should be float16, bfloat16, float32 or float64, got Long"),
    # window_score_backward
    "window_score_backward-grad": (lambda: ops.window_score_backward(torch.randn(2, 3, 3), *window_score_args()[:2],
                                                                     [4], [2]),
                                   r"window_score_backward: grad should be \[2, 4, 3\], got \[2, 3, 3\]"),
    "window_score_backward-grad-dtype": (lambda: ops.window_score_backward(torch.ones(2, 4, 3, dtype=torch.int32),
                                                                           *window_score_args()[:2], [4], [2]),
                                         "window_score_backward: grad should be float16, bfloat16, float32 or "
                                         "float64, got Int"),
    "window_score_backward-weights": (lambda: ops.window_score_backward(torch.randn(2, 4, 3), window_score_args()[0],
                                                                        [], [4], [2]),
                                      r"window_score_backward: weights should hold one tensor per scale \(1\), got 0"),
    # iou_label
    "iou_label-candidates": (lambda: ops.iou_label(torch.rand(2, 5, 3), seg(2), 0.5),
                             r"iou_label: candidates should be \[B, N, 2\] or \[N, 2\], got shape \[2, 5, 3\]"),
    "iou_label-gt": (lambda: ops.iou_label(seg(2, 5), torch.rand(2, 3), 0.5),
                     r"iou_label: gt should be \[B, 2\], got shape \[2, 3\]"),
    "iou_label-batch": (lambda: ops.iou_label(seg(3, 5), seg(2), 0.5),
                        "iou_label: candidates and gt should have one batch size, got 3 and 2"),
    "iou_label-dtype": (lambda: ops.iou_label(seg(2, 5, dtype=f64), seg(2), 0.5),
                        r"iou_label: candidates should have the dtype of gt \(Float\), got Double"),
    "iou_label-int": (lambda: ops.iou_label(torch.ones(2, 5, 2, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64),
                                            0.5),
                      "iou_label: gt should be float16, bfloat16, float32 or float64, got Long"),
    # temporal_nms
    "temporal_nms-segments": (lambda: ops.temporal_nms(torch.rand(2, 5), torch.rand(2, 5), 0.5, 3, None),
                              r"temporal_nms: segments should be \[B, N, 2\], got shape \[2, 5\]"),
    "temporal_nms-scores": (lambda: ops.temporal_nms(seg(2, 5), torch.rand(2, 4), 0.5, 3, None),
                            r"temporal_nms: scores should be \[2, 5\], got \[2, 4\]"),
    "temporal_nms-dtype": (lambda: ops.temporal_nms(seg(2, 5), torch.rand(2, 5, dtype=f64), 0.5, 3, None),
                           r"temporal_nms: scores should have the dtype of segments \(Float\), got Double"),
    "temporal_nms-threshold": (lambda: ops.temporal_nms(seg(2, 5), torch.rand(2, 5), 1.5, 3, None),
                               r"temporal_nms: iou_threshold should be in \[0, 1\], got 1.5"),
    "temporal_nms-top_k": (lambda: ops.temporal_nms(seg(2, 5), torch.rand(2, 5), 0.5, 0, None),
                           "temporal_nms: top_k should be >= 1, got 0"),
    "temporal_nms-valid": (lambda: ops.temporal_nms(seg(2, 5), torch.rand(2, 5), 0.5, 3, torch.ones(2, 5)),
                           r"temporal_nms: valid should be a bool \[2, 5\] tensor, got Float \[2, 5\]"),
    "temporal_nms-int": (lambda: ops.temporal_nms(torch.ones(2, 5, 2, dtype=torch.int32),
                                                  torch.ones(2, 5, dtype=torch.int32), 0.5, 3, None),
                         "temporal_nms: segments should be float16, bfloat16, float32 or float64, got Int"),
    # decode
    "decode-half": (lambda: ops.decode(*decode_args(f16)),
                    "decode: logits should be float32 or float64, got Half"),
    "decode-bfloat16": (lambda: ops.decode(*decode_args(bf16)),
                        "decode: logits should be float32 or float64, got BFloat16"),
    "decode-candidates": (lambda: ops.decode(torch.rand(5, 3), *decode_args()[1:]),
                          r"decode: candidates should be \[N, 2\], got shape \[5, 3\]"),
    "decode-logits": (lambda: ops.decode(decode_args()[0], torch.randn(2, 4), *decode_args()[2:]),
                      r"decode: logits should be \[B, 5\], got \[2, 4\]"),
    "decode-offsets": (lambda: ops.decode(*decode_args()[:2], torch.randn(2, 5, 3), *decode_args()[3:]),
                       r"decode: offsets should be \[2, 5, 2\], got \[2, 5, 3\]"),
    "decode-lengths": (lambda: ops.decode(*decode_args()[:3], torch.tensor([10, 7], dtype=torch.int32),
                                          *decode_args()[4:]),
                       r"decode: video_lengths should be int64 \[2\], got Int \[2\]"),
    "decode-durations": (lambda: ops.decode(*decode_args()[:4], torch.tensor([3.0, 4.0], dtype=f64),
                                            *decode_args()[5:]),
                         r"decode: durations should have the dtype of logits \(Float\), got Double"),
    "decode-threshold": (lambda: ops.decode(*decode_args()[:5], -0.1, 3),
                         r"decode: iou_threshold should be in \[0, 1\], got -0.1"),
    "decode-top_n": (lambda: ops.decode(*decode_args()[:6], 0),
                     "decode: top_n should be >= 1, got 0"),
    "decode-valid": (lambda: ops.decode(*decode_args(), torch.ones(2, 4, dtype=torch.bool)),
                     r"decode: valid should be a bool \[2, 5\] tensor, got Bool \[2, 4\]"),
}

COMPILED_OPS = {"pairwise_iou", "window_score", "window_score_backward", "iou_label",
                "temporal_nms", "decode"}


@needs_ext
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_op_rejects_bad_arguments(case):
    call, message = CASES[case]
    with pytest.raises(RuntimeError, match=message):
        call()


@needs_ext
def test_every_compiled_op_has_cases():
    from torch._library.custom_ops import OPDEFS  # the ops defined in Python (torch.library.custom_op)

    registered = {name for name in dir(ops) if not name.startswith("_") and f"fian_fast::{name}" not in OPDEFS}
    registered &= {n for n in registered if isinstance(getattr(ops, n), torch._ops.OpOverloadPacket)}
    assert registered == COMPILED_OPS
    assert {case.split("-")[0] for case in CASES} == COMPILED_OPS


@needs_ext
@pytest.mark.parametrize("dtype", [f16, bf16, f32, f64], ids=str)
def test_accepted_dtypes_run(dtype):
    """What the checks accept, the kernels dispatch (no "not implemented for" past a check)."""
    ops.pairwise_iou(seg(2, 4, dtype=dtype), seg(2, 3, dtype=dtype))
    ops.iou_label(seg(2, 5, dtype=dtype), seg(2, dtype=dtype), 0.5)
    ops.temporal_nms(seg(2, 5, dtype=dtype), torch.rand(2, 5).to(dtype), 0.5, 3, None)
    x, w, b, k, s = window_score_args(dtype)
    out = ops.window_score(x, w, b, k, s)
    ops.window_score_backward(torch.ones_like(out), x, w, k, s)
    if dtype in (f32, f64):
        ops.decode(*decode_args(dtype))


# ---- the Triton ops (registered at import; checks from fian_fast/_validation.py) ------------------

@pytest.fixture(scope="module")
def triton_ops():
    """The ops, where their kernels can run (a GPU, or the CPU under the interpreter): the checks
    run before any kernel, but a case that passed them by mistake would then launch one."""
    pytest.importorskip("triton")
    if not torch.cuda.is_available() and not _cga.triton_runs_on("cpu"):
        pytest.skip("needs a GPU or TRITON_INTERPRET=1")
    return ops


def _attention(**over):
    args = dict(q=torch.randn(2, 5, 16), k=torch.randn(2, 7, 16), v=torch.randn(2, 7, 16),
                ql=torch.tensor([5, 3]), kl=torch.tensor([7, 2]), heads=2, precision="ieee")
    args.update(over)
    return tuple(args.values())


def _gate(**over):
    args = dict(x=torch.randn(2, 5, 16), info=None, b_gate=torch.randn(16), b_info=torch.randn(16),
                ql=torch.tensor([5, 3]))
    args.update(over)
    return tuple(args.values())


TRITON_CASES = {
    "cga_attention-q": (lambda o: o.cga_attention(*_attention(q=torch.randn(5, 16))),
                        r"cga_attention: q should be a 3-D tensor, got 2-D"),
    "cga_attention-dtype": (lambda o: o.cga_attention(*_attention(q=torch.ones(2, 5, 16, dtype=torch.int32))),
                            "cga_attention: q should be a floating tensor, got torch.int32"),
    "cga_attention-k-dtype": (lambda o: o.cga_attention(*_attention(k=torch.randn(2, 7, 16, dtype=f64),
                                                                    v=torch.randn(2, 7, 16, dtype=f64))),
                              "cga_attention: k should be torch.float32 on cpu like q, got torch.float64 on cpu"),
    "cga_attention-k": (lambda o: o.cga_attention(*_attention(k=torch.randn(2, 7, 8))),
                        r"cga_attention: k should have size 16 at dim 2"),
    "cga_attention-v": (lambda o: o.cga_attention(*_attention(v=torch.randn(2, 6, 16))),
                        r"cga_attention: v should have the shape of k \(2, 7, 16\), got \(2, 6, 16\)"),
    "cga_attention-lengths": (lambda o: o.cga_attention(*_attention(kl=torch.tensor([7.0, 2.0]))),
                              "cga_attention: key_lengths should be an integer tensor, got torch.float32"),
    "cga_attention-heads": (lambda o: o.cga_attention(*_attention(heads=3)),
                            "cga_attention: num_heads should be a positive int dividing d = 16, got 3"),
    "cga_attention-wide-heads": (lambda o: o.cga_attention(*_attention(q=torch.randn(2, 5, 272),
                                                                       k=torch.randn(2, 7, 272),
                                                                       v=torch.randn(2, 7, 272), heads=1)),
                                 r"cga_attention: num_heads should leave heads of at most 256 features, got "
                                 r"num_heads = 1 for d = 272 \(272 features\)"),
    "cga_attention-precision": (lambda o: o.cga_attention(*_attention(precision="fast")),
                                "cga_attention: input_precision should be one of 'ieee', 'tf32', 'tf32x3', "
                                "got 'fast'"),
    "cga_attention_backward-lse": (
        lambda o: o.cga_attention_backward(torch.randn(2, 5, 16), *_attention()[:3], torch.randn(2, 5, 16),
                                           torch.randn(2, 5, 2), *_attention()[3:]),
        r"cga_attention_backward: lse should have size 2 at dim 1, got shape \(2, 5, 2\)"),
    "cga_attention_backward-grad": (
        lambda o: o.cga_attention_backward(torch.randn(2, 4, 16), *_attention()[:3], torch.randn(2, 5, 16),
                                           torch.randn(2, 2, 5), *_attention()[3:]),
        r"cga_attention_backward: grad_heads should have the shape of q \(2, 5, 16\), got \(2, 4, 16\)"),
    "cga_gate-dtype": (lambda o: o.cga_gate(*_gate(x=torch.zeros(2, 5, 16).to(torch.float8_e4m3fn))),
                       "cga_gate: x should be float32, float16, bfloat16 or float64, got torch.float8_e4m3fn"),
    "cga_gate-bias": (lambda o: o.cga_gate(*_gate(b_gate=torch.randn(15))),
                      r"cga_gate: b_gate should have size 16 at dim 0, got shape \(15,\)"),
    "cga_gate-info": (lambda o: o.cga_gate(*_gate(info=torch.randn(2, 5, 8))),
                      r"cga_gate: info should have the shape of x \(2, 5, 16\), got \(2, 5, 8\)"),
    "cga_gate-lengths": (lambda o: o.cga_gate(*_gate(ql=torch.tensor([5, 3, 1]))),
                         r"cga_gate: query_lengths should have size 2 at dim 0, got shape \(3,\)"),
    "cga_gate_backward-grad": (lambda o: o.cga_gate_backward(torch.randn(2, 5, 15), *_gate()),
                               r"cga_gate_backward: grad_out should have the shape of x \(2, 5, 16\), got \(2, 5, 15\)"),
    "cga_gate_backward-bias-dtype": (lambda o: o.cga_gate_backward(torch.randn(2, 5, 16),
                                                                   *_gate(b_info=torch.randn(16, dtype=f64))),
                                     "cga_gate_backward: b_info should be torch.float32 on cpu like x, got "
                                     "torch.float64 on cpu"),
}


@pytest.mark.parametrize("case", list(TRITON_CASES))
def test_triton_op_rejects_bad_arguments(case, triton_ops):
    call, message = TRITON_CASES[case]
    with pytest.raises(ValueError, match=message):
        call(triton_ops)


def test_every_triton_op_has_cases(triton_ops):
    names = {"cga_attention", "cga_attention_backward", "cga_gate", "cga_gate_backward"}
    assert all(hasattr(triton_ops, n) for n in names)
    assert {case.split("-")[0] for case in TRITON_CASES} == names


def test_triton_op_refuses_cpu_tensors_without_the_interpreter(monkeypatch, triton_ops):
    monkeypatch.setattr(_cga, "_INTERPRET", False)
    with pytest.raises(ValueError, match=r"cga_gate: x should be on a device Triton runs on \(CUDA, or the CPU with "
                                         r"TRITON_INTERPRET=1 set before import\), got cpu"):
        triton_ops.cga_gate(*_gate())
    with pytest.raises(ValueError, match="cga_triton: query should be on a device Triton runs on"):
        cga_triton(**_cga_triton_args())


def _cga_triton_args(**over):
    d = over.pop("d", 16)
    dtype = over.pop("dtype", f32)
    w = CGAWeights(*[torch.randn(d, d, dtype=dtype) for _ in range(6)], torch.zeros(d, dtype=dtype),
                   torch.zeros(d, dtype=dtype))
    args = dict(query=torch.randn(2, 5, d, dtype=dtype), key_value=torch.randn(2, 7, d, dtype=dtype),
                query_lengths=torch.tensor([5, 3]), key_lengths=torch.tensor([7, 2]), weights=w, num_heads=2)
    args.update(over)
    return args


CGA_TRITON_CASES = {
    "float64": (dict(dtype=f64), "cga_triton: query should be float32, float16 or bfloat16, got torch.float64"),
    "wide-heads": (dict(d=512, num_heads=1),
                   r"cga_triton: num_heads should leave heads of at most 256 features, got num_heads = 1 for "
                   r"d = 512 \(512 features\)"),
    "precision": (dict(input_precision="highest"),
                  "cga_triton: input_precision should be one of 'ieee', 'tf32', 'tf32x3' or None, got 'highest'"),
    "heads": (dict(num_heads=3), "cga_triton: num_heads should divide the feature size d = 16, got num_heads = 3"),
}


@pytest.mark.parametrize("case", list(CGA_TRITON_CASES))
def test_cga_triton_rejects_bad_arguments(case, triton_ops):
    over, message = CGA_TRITON_CASES[case]
    with pytest.raises(ValueError, match=message):
        cga_triton(**_cga_triton_args(**over))
