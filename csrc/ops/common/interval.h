// Interval maths shared by the CPU and CUDA kernels and by the standalone C++ tests.
// Torch-free on purpose: CMakeLists.txt compiles and tests it without libtorch.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FIAN_HD __host__ __device__ __forceinline__
#else
#define FIAN_HD inline
#endif

namespace fian_fast {
namespace interval {

// Length of the overlap of [s1, e1) and [s2, e2); 0 when they do not overlap.
template <typename T>
FIAN_HD T intersection(T s1, T e1, T s2, T e2) {
  const T lo = s1 > s2 ? s1 : s2;
  const T hi = e1 < e2 ? e1 : e2;
  return hi > lo ? hi - lo : T(0);
}

// 1-D intersection over union. Two empty intervals (union 0) have IoU 0, never NaN.
template <typename T>
FIAN_HD T iou(T s1, T e1, T s2, T e2) {
  const T inter = intersection(s1, e1, s2, e2);
  const T uni = (e1 - s1) + (e2 - s2) - inter;
  return uni > T(0) ? inter / uni : T(0);
}

}  // namespace interval
}  // namespace fian_fast
