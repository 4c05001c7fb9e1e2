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

namespace fian_fast {
namespace interval {

// Number of windows of size k and stride s that fit in n frames ((n - k) / s + 1; 0 if k > n).
FIAN_HD long long num_windows(long long n, long long k, long long s) {
  return k > n ? 0 : (n - k) / s + 1;
}

// A candidate moved by predicted offsets (eq. 17): (start + ds, end + de), re-ordered when the
// two cross, then clipped to [0, length]. The operation order is the reference's
// (fian_fast/reference/decode.py) so that both give the same bits.
template <typename T>
FIAN_HD void refine(T start, T end, T ds, T de, T length, T* out_start, T* out_end) {
  const T a = start + ds;
  const T b = end + de;
  T lo = a < b ? a : b;
  T hi = a < b ? b : a;
  lo = lo > T(0) ? lo : T(0);
  hi = hi > T(0) ? hi : T(0);
  *out_start = lo < length ? lo : length;
  *out_end = hi < length ? hi : length;
}

}  // namespace interval
}  // namespace fian_fast
