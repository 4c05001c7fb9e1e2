#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "ops/common/nms.h"
#include "ops/checks.h"

namespace fian_fast {
namespace {

constexpr int64_t kNmsGrain = 1 << 15;  // candidates per parallel chunk

at::Tensor temporal_nms_cpu(const at::Tensor& segments, const at::Tensor& scores, double iou_threshold,
                            int64_t top_k, const std::optional<at::Tensor>& valid) {
  check_temporal_nms_args(segments, scores, iou_threshold, top_k, valid);
  const int64_t B = segments.size(0), N = segments.size(1);
  auto keep = at::empty({B, top_k}, segments.options().dtype(at::kLong));
  if (B == 0) return keep;
  const auto seg = segments.contiguous();
  const auto sc = scores.contiguous();
  const auto mask = valid.has_value() ? valid->contiguous() : at::Tensor();
  const bool* pv = mask.defined() ? mask.data_ptr<bool>() : nullptr;
  int64_t* pk = keep.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, seg.scalar_type(), "temporal_nms_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* ps = seg.data_ptr<scalar_t>();
    const scalar_t* pscore = sc.data_ptr<scalar_t>();
    const acc_t threshold = static_cast<acc_t>(iou_threshold);
    // A sample costs a heap build (a few ns per candidate) plus a few dozen pops. Chunks of
    // about 2^15 candidates (~0.1 ms) keep each thread's share above the cost of waking it
    // (microseconds on an idle machine; on a loaded one it can be milliseconds, and the
    // figures there are not worth quoting anyway).
    at::parallel_for(0, B, std::max<int64_t>(1, kNmsGrain / std::max<int64_t>(N, 1)), [&](int64_t begin, int64_t end) {
      std::vector<int64_t> heap(N);
      for (int64_t b = begin; b < end; ++b) {
        nms::greedy_nms<scalar_t, scalar_t, acc_t>(pscore + b * N, ps + b * 2 * N, pv ? pv + b * N : nullptr, N,
                                                   threshold, top_k, pk + b * top_k, heap.data());
      }
    });
  });
  return keep;
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CPU, m) { m.impl("temporal_nms", &temporal_nms_cpu); }

}  // namespace fian_fast
