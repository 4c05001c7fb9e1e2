// Loop bodies of window_score's CUDA backward, torch-free so that the standalone C++ tests run
// the exact indexing of the kernels on the host (csrc/tests/test_common.cpp runs every "thread"
// of every "block" and compares with a direct evaluation of the gradient's definition).
//
// Layout (as the CUDA kernels see it): features x [B, T, C] and the output gradient
// grad [B, N, 3] contiguous; the weights of all scales tap-major, wt [3, Σk, C] with
// wt[o, Σk_<s + t, c] = w_s[o, c, t]. Scale s has windows of k_s frames every θ_s frames, count_s
// of them, candidates offset_s .. offset_s + count_s - 1. Window i of scale s covers frames
// i·θ_s .. i·θ_s + k_s - 1, so
//     dx[b, f, c]     = Σ_s Σ_{i: window i covers f} Σ_o grad[b, offset_s + i, o] · w_s[o, c, f - i·θ_s]
//     dW_s[o, c, t]   = Σ_b Σ_i grad[b, offset_s + i, o] · x[b, i·θ_s + t, c]
// Sums run in the accumulation type A (float for half types, as at::opmath_type), in a fixed
// order: the CUDA backward is deterministic.
#pragma once

#include <cstdint>

#include "interval.h"  // FIAN_HD

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FIAN_UNROLL _Pragma("unroll")
#else
#define FIAN_UNROLL
#endif

namespace fian_fast {
namespace window_grad {

constexpr int kMaxScales = 16;

// The scale layout, passed by value to the kernels.
struct Scales {
  int64_t size[kMaxScales];     // k_s
  int64_t stride[kMaxScales];   // θ_s
  int64_t count[kMaxScales];    // windows of the scale
  int64_t offset[kMaxScales];   // first candidate of the scale
  int64_t kprefix[kMaxScales];  // Σ k of the scales before: first tap of the scale in wt
  int n;
};

// Per-scale pointers of one call beside the geometry (the CUDA kernels' by-value argument).
template <typename T>
struct Table {
  Scales geo;
  const T* bias[kMaxScales];   // [3]
  T* grad_weight[kMaxScales];  // dW_s [3, C, k_s], contiguous
  T* grad_bias[kMaxScales];    // db_s [3]
};

// Scale owning tap `tap` of the tap-major layout.
FIAN_HD int scale_of_tap(const Scales& sc, int64_t tap) {
  int s = 0;
  while (s + 1 < sc.n && tap >= sc.kprefix[s + 1]) ++s;
  return s;
}

// Samples [lo, hi) of chunk j when B samples are cut into `chunks` near-equal chunks, in order.
FIAN_HD void batch_chunk(int64_t B, int64_t chunks, int64_t j, int64_t* lo, int64_t* hi) {
  *lo = j * B / chunks;
  *hi = (j + 1) * B / chunks;
}

// Features gradient at (frame f, channel c) for the NB samples b0 .. b0 + NB - 1 (those below
// nb only): one thread's work. Each weight loaded is used for every sample of the group.
template <int NB, typename T, typename A>
FIAN_HD void dx_samples(const T* grad, const T* wt, const Scales& sc, int64_t frames, int64_t C, int64_t taps,
                        int64_t total, int64_t b0, int nb, int64_t f, int64_t c, T* dx) {
  A acc[NB];
  FIAN_UNROLL
  for (int bb = 0; bb < NB; ++bb) acc[bb] = A(0);
  for (int s = 0; s < sc.n; ++s) {
    const int64_t k = sc.size[s], st = sc.stride[s];
    // windows i with i·θ <= f < i·θ + k
    const int64_t lo = f >= k ? (f - k) / st + 1 : 0;
    const int64_t last = f / st;
    const int64_t hi = last < sc.count[s] - 1 ? last : sc.count[s] - 1;
    for (int64_t i = lo; i <= hi; ++i) {
      const T* w = wt + (sc.kprefix[s] + f - i * st) * C + c;
      const A w0 = static_cast<A>(w[0]), w1 = static_cast<A>(w[taps * C]), w2 = static_cast<A>(w[2 * taps * C]);
      const T* g = grad + (b0 * total + sc.offset[s] + i) * 3;
      FIAN_UNROLL
      for (int bb = 0; bb < NB; ++bb) {
        if (bb < nb) {
          const T* gb = g + bb * total * 3;
          acc[bb] += static_cast<A>(gb[0]) * w0 + static_cast<A>(gb[1]) * w1 + static_cast<A>(gb[2]) * w2;
        }
      }
    }
  }
  FIAN_UNROLL
  for (int bb = 0; bb < NB; ++bb) {
    if (bb < nb) dx[((b0 + bb) * frames + f) * C + c] = static_cast<T>(acc[bb]);
  }
}

// Partial weight gradient of tap `tap` (scale s, offset t in the window) and channel c over the
// samples [b_lo, b_hi): out[o] = Σ_{b_lo <= b < b_hi} Σ_i grad[b, offset_s + i, o] · x[b, i·θ_s + t, c].
template <typename T, typename A>
FIAN_HD void dw_partial(const T* grad, const T* x, const Scales& sc, int64_t frames, int64_t C, int64_t total,
                        int64_t tap, int64_t c, int64_t b_lo, int64_t b_hi, A out[3]) {
  const int s = scale_of_tap(sc, tap);
  const int64_t t = tap - sc.kprefix[s], st = sc.stride[s], L = sc.count[s];
  A a0 = A(0), a1 = A(0), a2 = A(0);
  for (int64_t b = b_lo; b < b_hi; ++b) {
    const T* xb = x + (b * frames + t) * C + c;
    const T* gb = grad + (b * total + sc.offset[s]) * 3;
    for (int64_t i = 0; i < L; ++i) {
      const A v = static_cast<A>(xb[i * st * C]);
      a0 += v * static_cast<A>(gb[3 * i]);
      a1 += v * static_cast<A>(gb[3 * i + 1]);
      a2 += v * static_cast<A>(gb[3 * i + 2]);
    }
  }
  out[0] = a0;
  out[1] = a1;
  out[2] = a2;
}

// Index of dW_s[o, c, t] in the scale's own [3, C, k] gradient.
FIAN_HD int64_t dw_index(const Scales& sc, int s, int64_t o, int64_t c, int64_t t, int64_t C) {
  return (o * C + c) * sc.size[s] + t;
}

// Final weight gradient of (tap, c) from `chunks` partial sums laid out [chunks, 3, taps·C],
// added in chunk order (fixed, so the result does not depend on scheduling).
template <typename A>
FIAN_HD void dw_reduce(const A* partial, int64_t chunks, int64_t taps, int64_t C, int64_t tap, int64_t c,
                       A out[3]) {
  const int64_t q = tap * C + c, plane = taps * C;
  A a0 = A(0), a1 = A(0), a2 = A(0);
  for (int64_t j = 0; j < chunks; ++j) {
    const A* p = partial + j * 3 * plane + q;
    a0 += p[0];
    a1 += p[plane];
    a2 += p[2 * plane];
  }
  out[0] = a0;
  out[1] = a1;
  out[2] = a2;
}

// ---- one CUDA thread's work, by its flat index (the kernels are grid loops over these) ----

// Threads of the features gradient: one per (sample group of NB, frame, channel), channel fastest.
FIAN_HD int64_t dx_threads(int64_t B, int64_t frames, int64_t C, int NB) {
  return (B + NB - 1) / NB * frames * C;
}

template <int NB, typename T, typename A>
FIAN_HD void dx_thread(int64_t idx, const T* grad, const T* wt, const Scales& sc, int64_t B, int64_t frames,
                       int64_t C, int64_t taps, int64_t total, T* dx) {
  const int64_t c = idx % C;
  const int64_t f = (idx / C) % frames;
  const int64_t b0 = idx / (C * frames) * NB;
  const int nb = B - b0 < NB ? static_cast<int>(B - b0) : NB;
  dx_samples<NB, T, A>(grad, wt, sc, frames, C, taps, total, b0, nb, f, c, dx);
}

// Thread q = tap·C + c of batch chunk j (of `chunks`) of the weight gradient. One chunk: writes
// dW_s[o, c, t]; several: partial[j, o, q] for dw_reduce_thread.
template <typename T, typename A>
FIAN_HD void dw_thread(int64_t q, int64_t j, int64_t chunks, const T* grad, const T* x, const Table<T>& tab,
                       int64_t B, int64_t frames, int64_t C, int64_t total, int64_t taps, A* partial) {
  const int64_t tap = q / C, c = q % C;
  int64_t lo, hi;
  batch_chunk(B, chunks, j, &lo, &hi);
  A a[3];
  dw_partial<T, A>(grad, x, tab.geo, frames, C, total, tap, c, lo, hi, a);
  if (chunks == 1) {
    const int s = scale_of_tap(tab.geo, tap);
    const int64_t t = tap - tab.geo.kprefix[s];
    FIAN_UNROLL
    for (int o = 0; o < 3; ++o) tab.grad_weight[s][dw_index(tab.geo, s, o, c, t, C)] = static_cast<T>(a[o]);
  } else {
    A* p = partial + j * 3 * taps * C + q;
    FIAN_UNROLL
    for (int o = 0; o < 3; ++o) p[o * taps * C] = a[o];
  }
}

// Thread q = tap·C + c of the final weight gradient: the chunks' partial sums in chunk order.
template <typename T, typename A>
FIAN_HD void dw_reduce_thread(int64_t q, const A* partial, int64_t chunks, const Table<T>& tab, int64_t C,
                              int64_t taps) {
  const int64_t tap = q / C, c = q % C;
  A a[3];
  dw_reduce<A>(partial, chunks, taps, C, tap, c, a);
  const int s = scale_of_tap(tab.geo, tap);
  const int64_t t = tap - tab.geo.kprefix[s];
  FIAN_UNROLL
  for (int o = 0; o < 3; ++o) tab.grad_weight[s][dw_index(tab.geo, s, o, c, t, C)] = static_cast<T>(a[o]);
}

}  // namespace window_grad
}  // namespace fian_fast
