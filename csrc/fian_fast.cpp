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
}
