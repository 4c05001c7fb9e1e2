// Scale layout of window_score's candidates, shared by its CPU and CUDA kernels: scale s has
// windows of k_s frames every θ_s frames, (T - k_s) / θ_s + 1 of them, and its candidates follow
// those of the scales before it (the order of fian_fast.reference.window_candidates). The
// arguments are checked before a plan is made: check_window_score* in ops/checks.h return it.
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

// The layout of checked window sizes and strides (ops/checks.h: check_windows).
inline std::vector<WindowScale> window_plan(int64_t num_frames, at::IntArrayRef sizes, at::IntArrayRef strides) {
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

}  // namespace fian_fast
