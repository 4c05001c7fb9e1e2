// window_candidates has no tensor input, so it is registered for CompositeExplicitAutograd:
// the dispatcher then serves it on every backend (and under the meta/fake modes).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/window_plan.h"

namespace fian_fast {
namespace {

at::Tensor window_candidates(int64_t num_frames, at::IntArrayRef window_sizes, at::IntArrayRef strides) {
  const auto plan = window_plan("window_candidates", num_frames, window_sizes, strides);
  auto out = at::empty({window_total(plan), 2}, at::TensorOptions().dtype(at::kFloat));
  float* p = out.data_ptr<float>();
  for (const auto& scale : plan) {
    for (int64_t i = 0; i < scale.count; ++i) {
      const int64_t start = i * scale.stride;
      p[2 * (scale.offset + i)] = static_cast<float>(start);
      p[2 * (scale.offset + i) + 1] = static_cast<float>(start + scale.size);
    }
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CompositeExplicitAutograd, m) { m.impl("window_candidates", &window_candidates); }

}  // namespace fian_fast
