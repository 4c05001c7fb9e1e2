// Every schema of fian_fast._C in one place. Backend kernels live in
// csrc/ops/cpu/<op>_kernel.cpp (TORCH_LIBRARY_IMPL CPU) and csrc/ops/cuda/<op>_kernel.cu
// (TORCH_LIBRARY_IMPL CUDA); fake kernels and autograd are registered in fian_fast/ops/<op>.py.
#include <Python.h>
#include <torch/library.h>

#ifndef FIAN_FAST_TORCH_VERSION
#define FIAN_FAST_TORCH_VERSION "unknown"
#endif

extern "C" {
// `import fian_fast._C` loads this library, which runs the registrations below. The module
// carries the build's facts so the package can check them against the running torch.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* m = PyModule_Create(&module_def);
  if (m == nullptr) return nullptr;
  PyModule_AddStringConstant(m, "torch_version", FIAN_FAST_TORCH_VERSION);
#ifdef FIAN_FAST_WITH_CUDA
  PyModule_AddIntConstant(m, "with_cuda", 1);
#else
  PyModule_AddIntConstant(m, "with_cuda", 0);
#endif
  return m;
}
}

TORCH_LIBRARY(fian_fast, m) {
  // 1-D interval IoU of a [B, N, 2] against b [B, M, 2] -> [B, N, M].
  m.def("pairwise_iou(Tensor a, Tensor b) -> Tensor");
  // Per-scale strided Conv1d of features [B, T, C] with weights[s] [3, C, k_s] -> [B, N, 3].
  m.def("window_score(Tensor features, Tensor[] weights, Tensor[] biases, int[] window_sizes, "
        "int[] strides) -> Tensor");
  // Gradients of window_score w.r.t. features, every weight and every bias.
  m.def("window_score_backward(Tensor grad, Tensor features, Tensor[] weights, int[] window_sizes, "
        "int[] strides) -> (Tensor, Tensor[], Tensor[])");
  // IoU of candidates [B, N, 2] (or [N, 2]) with gt [B, 2] -> (iou, iou > tau, gt - candidate).
  m.def("iou_label(Tensor candidates, Tensor gt, float tau) -> (Tensor, Tensor, Tensor)");
  // Greedy NMS per sample -> int64 [B, top_k] indices in rank order, -1 padding.
  m.def("temporal_nms(Tensor segments, Tensor scores, float iou_threshold, int top_k, "
        "Tensor? valid=None) -> Tensor");
  // Refine + sigmoid + NMS + seconds -> (segments [B, n, 2], scores [B, n], indices [B, n]).
  m.def("decode(Tensor candidates, Tensor logits, Tensor offsets, Tensor video_lengths, Tensor durations, "
        "float iou_threshold, int top_n, Tensor? valid=None) -> (Tensor, Tensor, Tensor)");
}
