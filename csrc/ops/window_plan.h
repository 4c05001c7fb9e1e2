// Scale layout shared by the window_candidates and window_score kernels (CPU and CUDA): scale s
// has windows of k_s frames every θ_s frames, (T - k_s) / θ_s + 1 of them, and its candidates
// follow those of the scales before it.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "ops/common/interval.h"

namespace fian_fast {

struct WindowScale {
  int64_t size;    // k_s, frames
  int64_t stride;  // θ_s, frames
  int64_t count;   // windows of this scale
  int64_t offset;  // index of its first candidate
};

inline std::vector<WindowScale> window_plan(const char* op, int64_t num_frames, at::IntArrayRef sizes,
                                            at::IntArrayRef strides) {
  TORCH_CHECK(num_frames >= 1, op, ": num_frames should be >= 1, got ", num_frames);
  TORCH_CHECK(!sizes.empty(), op, ": window_sizes should hold at least one size");
  TORCH_CHECK(sizes.size() == strides.size(), op, ": window_sizes and strides should have one length, got ",
              sizes.size(), " and ", strides.size());
  std::vector<WindowScale> plan;
  int64_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    TORCH_CHECK(sizes[i] >= 1 && sizes[i] <= num_frames, op, ": window_sizes should lie in [1, ", num_frames,
                "], got ", sizes);
    TORCH_CHECK(strides[i] >= 1, op, ": strides should be >= 1, got ", strides);
    const int64_t count = interval::num_windows(num_frames, sizes[i], strides[i]);
    plan.push_back({sizes[i], strides[i], count, offset});
    offset += count;
  }
  return plan;
}

inline int64_t window_total(const std::vector<WindowScale>& plan) {
  return plan.empty() ? 0 : plan.back().offset + plan.back().count;
}

// Checks of window_score's arguments common to both backends.
inline std::vector<WindowScale> check_window_score(const at::Tensor& features, at::TensorList weights,
                                                   at::IntArrayRef sizes, at::IntArrayRef strides) {
  TORCH_CHECK(features.dim() == 3, "window_score: features should be [B, T, C], got shape ", features.sizes());
  TORCH_CHECK(at::isFloatingType(features.scalar_type()), "window_score: features should be floating, got ",
              features.scalar_type());
  auto plan = window_plan("window_score", features.size(1), sizes, strides);
  TORCH_CHECK(weights.size() == plan.size(), "window_score: expected one weight per scale (", plan.size(),
              "), got ", weights.size());
  for (size_t s = 0; s < plan.size(); ++s) {
    TORCH_CHECK(weights[s].dim() == 3 && weights[s].size(0) == 3 && weights[s].size(1) == features.size(2) &&
                    weights[s].size(2) == plan[s].size,
                "window_score: weights[", s, "] should be [3, ", features.size(2), ", ", plan[s].size, "], got ",
                weights[s].sizes());
    TORCH_CHECK(weights[s].scalar_type() == features.scalar_type() && weights[s].device() == features.device(),
                "window_score: weights[", s, "] should have the dtype and device of features");
  }
  return plan;
}

}  // namespace fian_fast
