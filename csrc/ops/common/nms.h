// Greedy temporal NMS of one sample, shared by the CPU kernels (temporal_nms, decode) and the
// standalone C++ tests; the CUDA kernels use ranks_before() and interval::iou() from here and
// interval.h so that both backends order and suppress identically. Torch-free on purpose.
#pragma once

#include <algorithm>
#include <cstdint>

#include "interval.h"

namespace fian_fast {
namespace nms {

// Rank order of the greedy pass: higher score first, equal scores by lower index. A strict
// total order as long as no score is NaN (the Python entry points reject NaN).
template <typename S>
FIAN_HD bool ranks_before(S score_a, int64_t idx_a, S score_b, int64_t idx_b) {
  return score_a > score_b || (score_a == score_b && idx_a < idx_b);
}

// Greedy NMS: walks candidates in rank order and keeps one unless its IoU with an already kept
// one is strictly greater than `threshold`. Only the kept list is compared against, which is the
// same as suppressing every later candidate once one is kept, in O(N * top_k) instead of O(N^2).
// A binary heap yields the rank order lazily: the walk usually stops after a few dozen pops.
//
// scores[N] (any type ordered by <), seg[2N] = (start, end) pairs in T, read as A (the IoU's
// type: float for half inputs) only for the candidates the walk reaches; valid[N] or nullptr;
// out[top_k] receives kept indices then -1; heap[N] is scratch. Returns the number kept.
template <typename S, typename T, typename A = T>
int64_t greedy_nms(const S* scores, const T* seg, const bool* valid, int64_t n, A threshold, int64_t top_k,
                   int64_t* out, int64_t* heap) {
  int64_t size = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (valid == nullptr || valid[i]) heap[size++] = i;
  }
  // std heaps put the largest element first under `less`; "less" here is "ranks after".
  auto ranks_after = [scores](int64_t a, int64_t b) { return ranks_before(scores[b], b, scores[a], a); };
  std::make_heap(heap, heap + size, ranks_after);
  int64_t kept = 0;
  while (size > 0 && kept < top_k) {
    std::pop_heap(heap, heap + size, ranks_after);
    const int64_t i = heap[--size];
    const A s = static_cast<A>(seg[2 * i]), e = static_cast<A>(seg[2 * i + 1]);
    bool suppressed = false;
    for (int64_t j = 0; j < kept && !suppressed; ++j) {
      const int64_t k = out[j];
      suppressed = interval::iou<A>(static_cast<A>(seg[2 * k]), static_cast<A>(seg[2 * k + 1]), s, e) > threshold;
    }
    if (!suppressed) out[kept++] = i;
  }
  for (int64_t j = kept; j < top_k; ++j) out[j] = -1;
  return kept;
}

}  // namespace nms
}  // namespace fian_fast
