// Scale layout shared by the window_candidates and window_score kernels (CPU and CUDA): scale s
// has windows of k_s frames every θ_s frames, (T - k_s) / θ_s + 1 of them, and its candidates
// follow those of the scales before it. The argument checks live in ops/checks.h.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "ops/checks.h"
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
  check_windows(op, num_frames, sizes, strides);
  std::vector<WindowScale> plan;
  int64_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int64_t count = interval::num_windows(num_frames, sizes[i], strides[i]);
    plan.push_back({sizes[i], strides[i], count, offset});
    offset += count;
  }
  return plan;
}

inline int64_t window_total(const std::vector<WindowScale>& plan) {
  return plan.empty() ? 0 : plan.back().offset + plan.back().count;
}

// window_score's arguments checked, then its scale layout.
inline std::vector<WindowScale> check_window_score(const at::Tensor& features, at::TensorList weights,
                                                   at::TensorList biases, at::IntArrayRef sizes,
                                                   at::IntArrayRef strides) {
  check_window_score_args(features, weights, biases, sizes, strides);
  return window_plan("window_score", features.size(1), sizes, strides);
}

// window_score_backward's arguments checked, then its scale layout.
inline std::vector<WindowScale> check_window_score_backward(const at::Tensor& grad, const at::Tensor& features,
                                                            at::TensorList weights, at::IntArrayRef sizes,
                                                            at::IntArrayRef strides) {
  check_window_weights("window_score_backward", features, weights, sizes, strides);
  auto plan = window_plan("window_score_backward", features.size(1), sizes, strides);
  check_window_score_grad(grad, features, window_total(plan));
  return plan;
}

}  // namespace fian_fast
