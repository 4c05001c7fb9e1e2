// Greedy NMS of one sample by one thread block, shared by the temporal_nms and decode kernels.
//
// Shared memory holds the rank keys and indices (bitonic-sorted in place), the segments in
// candidate order and a suppression bitmask over sorted positions. The order is that of
// nms::ranks_before and the IoU that of interval::iou, so the kept indices equal the CPU
// kernel's bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "ops/common/interval.h"
#include "ops/common/nms.h"

namespace fian_fast {
namespace block_nms {

inline int64_t padded_size(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// Bytes of dynamic shared memory for n candidates with keys and segments of type T.
template <typename T>
inline size_t shared_bytes(int64_t n) {
  const int64_t p = padded_size(n);
  return static_cast<size_t>(p + 2 * n) * sizeof(T) + static_cast<size_t>(p) * sizeof(int) +
         static_cast<size_t>((p + 31) / 32) * sizeof(unsigned int);
}

template <typename T>
struct Shared {
  T* key;                  // [P] rank key (score or logit); -inf for padding and invalid slots
  T* seg;                  // [2N] (start, end) in candidate order
  int* idx;                // [P] candidate index; INT_MAX for padding and invalid slots
  unsigned int* removed;   // [P / 32] bit q set: sorted position q is suppressed

  __device__ static Shared carve(void* base, int n) {
    int p = 1;
    while (p < n) p <<= 1;
    Shared s;
    s.key = reinterpret_cast<T*>(base);
    s.seg = s.key + p;
    s.idx = reinterpret_cast<int*>(s.seg + 2 * n);
    s.removed = reinterpret_cast<unsigned int*>(s.idx + p);
    return s;
  }
};

// Sorts (key, idx) of length p (a power of two) into rank order with a bitonic network.
template <typename T>
__device__ void bitonic_rank_sort(T* key, int* idx, int p) {
  for (int size = 2; size <= p; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int t = threadIdx.x; t < p / 2; t += blockDim.x) {
        const int lo = 2 * t - (t & (stride - 1));
        const int hi = lo + stride;
        const bool forward = (lo & size) == 0;
        const bool hi_first = nms::ranks_before<T>(key[hi], idx[hi], key[lo], idx[lo]);
        if (hi_first == forward) {
          const T k = key[lo];
          key[lo] = key[hi];
          key[hi] = k;
          const int i = idx[lo];
          idx[lo] = idx[hi];
          idx[hi] = i;
        }
      }
      __syncthreads();
    }
  }
}

// Expects key/idx of every valid candidate (others padded with -inf / INT_MAX) and seg filled,
// and `n_valid` the number of valid candidates, all visible to the block. Writes the kept
// candidate indices to out[0, top_k) (-1 after the last) and returns how many were kept
// (the same value in every thread).
template <typename T>
__device__ int greedy(Shared<T> sh, int n, int n_valid, T threshold, int top_k, int64_t* out) {
  int p = 1;
  while (p < n) p <<= 1;
  for (int w = threadIdx.x; w < (p + 31) / 32; w += blockDim.x) sh.removed[w] = 0u;
  __syncthreads();
  bitonic_rank_sort<T>(sh.key, sh.idx, p);  // ends with __syncthreads() when p > 1
  int kept = 0;
  for (int pos = 0; pos < n_valid && kept < top_k; ++pos) {
    // Uniform across the block: the bitmask only changes between the two barriers below.
    if ((sh.removed[pos >> 5] >> (pos & 31)) & 1u) continue;
    const int i = sh.idx[pos];
    // Only a NaN key (not a strict order) can leave a padding slot among the first n_valid;
    // skipping it keeps the reads in bounds. Uniform: every thread reads the same idx.
    if (i >= n) continue;
    if (threadIdx.x == 0) out[kept] = i;
    ++kept;
    if (kept == top_k) break;
    const T s = sh.seg[2 * i], e = sh.seg[2 * i + 1];
    for (int q = pos + 1 + threadIdx.x; q < n_valid; q += blockDim.x) {
      const int j = sh.idx[q];
      if (j < n && interval::iou<T>(s, e, sh.seg[2 * j], sh.seg[2 * j + 1]) > threshold) {
        atomicOr(&sh.removed[q >> 5], 1u << (q & 31));
      }
    }
    __syncthreads();
  }
  for (int j = kept + threadIdx.x; j < top_k; j += blockDim.x) out[j] = -1;
  __syncthreads();
  return kept;
}

// Fills one slot of the sort input: valid candidates carry their key and index, the rest sort last.
template <typename T>
__device__ void fill_slot(Shared<T> sh, int slot, bool valid, T key) {
  sh.key[slot] = valid ? key : -INFINITY;
  sh.idx[slot] = valid ? slot : INT_MAX;
}

}  // namespace block_nms
}  // namespace fian_fast
