// Every argument check of the compiled ops, CPU and CUDA alike: the one home of C++ validation.
//
// Each check names the op, the argument, what was expected and what it got. The checks are
// metadata only (shapes, dtypes, devices, scalars): they read no tensor data, so they cost
// nothing and never wait for a GPU. Each dtype check accepts exactly the dtypes its kernels
// dispatch (decode: float32 and float64; every other op also float16 and bfloat16). The Python
// wrappers in fian_fast/ops make the same checks with ValueError first; these guard direct
// torch.ops.fian_fast.* calls.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "ops/window_plan.h"

namespace fian_fast {
namespace checks {

// The dtypes of AT_DISPATCH_FLOATING_TYPES_AND2(kHalf, kBFloat16, ...).
inline bool is_float_or_half(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}
// The dtypes of AT_DISPATCH_FLOATING_TYPES(...).
inline bool is_float(at::ScalarType t) { return t == at::kFloat || t == at::kDouble; }

constexpr const char* kFloatOrHalf = "float16, bfloat16, float32 or float64";
constexpr const char* kFloat = "float32 or float64";

inline void dtype(const char* op, const char* name, const at::Tensor& t, bool half_ok) {
  const bool ok = half_ok ? is_float_or_half(t.scalar_type()) : is_float(t.scalar_type());
  TORCH_CHECK(ok, op, ": ", name, " should be ", half_ok ? kFloatOrHalf : kFloat, ", got ", t.scalar_type());
}

inline void same_dtype(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                       const at::Tensor& ref) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " should have the dtype of ", ref_name, " (",
              ref.scalar_type(), "), got ", t.scalar_type());
}

inline void same_device(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                        const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " should be on the device of ", ref_name, " (",
              ref.device(), "), got ", t.device());
}

// The kernel of a backend file serves tensors of its device only (the dispatcher routes by the
// first tensor argument; the others must follow it).
inline void on_cuda(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.is_cuda(), op, " (CUDA kernel): ", name, " should be on a CUDA device, got ", t.device());
}

inline void fraction(const char* op, const char* name, double value) {
  TORCH_CHECK(value >= 0.0 && value <= 1.0, op, ": ", name, " should be in [0, 1], got ", value);
}

inline void at_least_one(const char* op, const char* name, int64_t value) {
  TORCH_CHECK(value >= 1, op, ": ", name, " should be >= 1, got ", value);
}

inline void valid_mask(const char* op, const std::optional<at::Tensor>& valid, int64_t B, int64_t N,
                       const char* ref_name, const at::Tensor& ref) {
  if (!valid.has_value()) return;
  TORCH_CHECK(valid->scalar_type() == at::kBool && valid->dim() == 2 && valid->size(0) == B && valid->size(1) == N,
              op, ": valid should be a bool [", B, ", ", N, "] tensor, got ", valid->scalar_type(), " ",
              valid->sizes());
  same_device(op, "valid", *valid, ref_name, ref);
}

}  // namespace checks

// ---- pairwise_iou --------------------------------------------------------------------------
inline void check_pairwise_iou_args(const at::Tensor& a, const at::Tensor& b) {
  const char* op = "pairwise_iou";
  TORCH_CHECK(a.dim() == 3 && a.size(2) == 2, op, ": a should be a [B, N, 2] tensor of intervals, got shape ",
              a.sizes());
  TORCH_CHECK(b.dim() == 3 && b.size(2) == 2, op, ": b should be a [B, M, 2] tensor of intervals, got shape ",
              b.sizes());
  TORCH_CHECK(a.size(0) == b.size(0), op, ": a and b should have one batch size, got ", a.size(0), " and ",
              b.size(0));
  checks::dtype(op, "a", a, true);
  checks::same_dtype(op, "b", b, "a", a);
  checks::same_device(op, "b", b, "a", a);
}

// ---- window_score ----------------------------------------------------------------------------
// check_window_score and check_window_score_backward, the kernels' entry checks, return the scale
// layout of the checked arguments (ops/window_plan.h).
inline void check_windows(const char* op, int64_t num_frames, at::IntArrayRef sizes, at::IntArrayRef strides) {
  TORCH_CHECK(num_frames >= 1, op, ": num_frames should be >= 1, got ", num_frames);
  TORCH_CHECK(!sizes.empty(), op, ": window_sizes should hold at least one size, got ", sizes);
  TORCH_CHECK(sizes.size() == strides.size(), op, ": window_sizes and strides should have one length, got ",
              sizes.size(), " sizes and ", strides.size(), " strides");
  for (size_t i = 0; i < sizes.size(); ++i) {
    TORCH_CHECK(sizes[i] >= 1 && sizes[i] <= num_frames, op, ": window_sizes should lie in [1, num_frames=",
                num_frames, "], got ", sizes);
    TORCH_CHECK(strides[i] >= 1, op, ": strides should be >= 1, got ", strides);
  }
}

inline void check_window_weights(const char* op, const at::Tensor& features, at::TensorList weights,
                                 at::IntArrayRef sizes, at::IntArrayRef strides) {
  TORCH_CHECK(features.dim() == 3, op, ": features should be [B, T, C], got shape ", features.sizes());
  checks::dtype(op, "features", features, true);
  check_windows(op, features.size(1), sizes, strides);
  TORCH_CHECK(weights.size() == sizes.size(), op, ": weights should hold one tensor per scale (", sizes.size(),
              "), got ", weights.size());
  for (size_t s = 0; s < sizes.size(); ++s) {
    const at::Tensor& w = weights[s];
    TORCH_CHECK(w.dim() == 3 && w.size(0) == 3 && w.size(1) == features.size(2) && w.size(2) == sizes[s], op,
                ": weights[", s, "] should be [3, ", features.size(2), ", ", sizes[s], "], got ", w.sizes());
    TORCH_CHECK(w.scalar_type() == features.scalar_type() && w.device() == features.device(), op, ": weights[", s,
                "] should be ", features.scalar_type(), " on ", features.device(), ", got ", w.scalar_type(), " on ",
                w.device());
  }
}

inline void check_window_score_args(const at::Tensor& features, at::TensorList weights, at::TensorList biases,
                                    at::IntArrayRef sizes, at::IntArrayRef strides) {
  const char* op = "window_score";
  check_window_weights(op, features, weights, sizes, strides);
  TORCH_CHECK(biases.size() == sizes.size(), op, ": biases should hold one tensor per scale (", sizes.size(),
              "), got ", biases.size());
  for (size_t s = 0; s < biases.size(); ++s) {
    const at::Tensor& b = biases[s];
    TORCH_CHECK(b.numel() == 3 && checks::is_float_or_half(b.scalar_type()) && b.device() == features.device(), op,
                ": biases[", s, "] should hold 3 floating elements on ", features.device(), ", got ", b.scalar_type(),
                " ", b.sizes(), " on ", b.device());
  }
}

// The output gradient of window_score_backward (features and weights: check_window_weights).
inline void check_window_score_grad(const at::Tensor& grad, const at::Tensor& features, int64_t num_candidates) {
  const char* op = "window_score_backward";
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == features.size(0) && grad.size(1) == num_candidates &&
                  grad.size(2) == 3,
              op, ": grad should be [", features.size(0), ", ", num_candidates, ", 3], got ", grad.sizes());
  checks::dtype(op, "grad", grad, true);
  checks::same_device(op, "grad", grad, "features", features);
}

// window_score's arguments checked, then its scale layout.
inline std::vector<WindowScale> check_window_score(const at::Tensor& features, at::TensorList weights,
                                                   at::TensorList biases, at::IntArrayRef sizes,
                                                   at::IntArrayRef strides) {
  check_window_score_args(features, weights, biases, sizes, strides);
  return window_plan(features.size(1), sizes, strides);
}

// window_score_backward's arguments checked, then its scale layout.
inline std::vector<WindowScale> check_window_score_backward(const at::Tensor& grad, const at::Tensor& features,
                                                            at::TensorList weights, at::IntArrayRef sizes,
                                                            at::IntArrayRef strides) {
  check_window_weights("window_score_backward", features, weights, sizes, strides);
  auto plan = window_plan(features.size(1), sizes, strides);
  check_window_score_grad(grad, features, window_total(plan));
  return plan;
}

// ---- iou_label -----------------------------------------------------------------------------
inline void check_iou_label_args(const at::Tensor& candidates, const at::Tensor& gt) {
  const char* op = "iou_label";
  TORCH_CHECK((candidates.dim() == 3 || candidates.dim() == 2) && candidates.size(-1) == 2, op,
              ": candidates should be [B, N, 2] or [N, 2], got shape ", candidates.sizes());
  TORCH_CHECK(gt.dim() == 2 && gt.size(1) == 2, op, ": gt should be [B, 2], got shape ", gt.sizes());
  TORCH_CHECK(candidates.dim() == 2 || candidates.size(0) == gt.size(0), op,
              ": candidates and gt should have one batch size, got ", candidates.size(0), " and ", gt.size(0));
  checks::dtype(op, "gt", gt, true);
  checks::same_dtype(op, "candidates", candidates, "gt", gt);
  checks::same_device(op, "candidates", candidates, "gt", gt);
}

// ---- temporal_nms --------------------------------------------------------------------------
inline void check_temporal_nms_args(const at::Tensor& segments, const at::Tensor& scores, double threshold,
                                    int64_t top_k, const std::optional<at::Tensor>& valid) {
  const char* op = "temporal_nms";
  TORCH_CHECK(segments.dim() == 3 && segments.size(2) == 2, op, ": segments should be [B, N, 2], got shape ",
              segments.sizes());
  TORCH_CHECK(scores.dim() == 2 && scores.size(0) == segments.size(0) && scores.size(1) == segments.size(1), op,
              ": scores should be [", segments.size(0), ", ", segments.size(1), "], got ", scores.sizes());
  checks::dtype(op, "segments", segments, true);
  checks::same_dtype(op, "scores", scores, "segments", segments);
  checks::same_device(op, "scores", scores, "segments", segments);
  checks::fraction(op, "iou_threshold", threshold);
  checks::at_least_one(op, "top_k", top_k);
  checks::valid_mask(op, valid, segments.size(0), segments.size(1), "segments", segments);
}

// ---- decode --------------------------------------------------------------------------------
inline void check_decode_args(const at::Tensor& candidates, const at::Tensor& logits, const at::Tensor& offsets,
                              const at::Tensor& video_lengths, const at::Tensor& durations, double threshold,
                              int64_t top_n, const std::optional<at::Tensor>& valid) {
  const char* op = "decode";
  TORCH_CHECK(candidates.dim() == 2 && candidates.size(1) == 2, op, ": candidates should be [N, 2], got shape ",
              candidates.sizes());
  const int64_t N = candidates.size(0);
  TORCH_CHECK(logits.dim() == 2 && logits.size(1) == N, op, ": logits should be [B, ", N, "], got ", logits.sizes());
  const int64_t B = logits.size(0);
  TORCH_CHECK(offsets.dim() == 3 && offsets.size(0) == B && offsets.size(1) == N && offsets.size(2) == 2, op,
              ": offsets should be [", B, ", ", N, ", 2], got ", offsets.sizes());
  TORCH_CHECK(video_lengths.dim() == 1 && video_lengths.size(0) == B && video_lengths.scalar_type() == at::kLong, op,
              ": video_lengths should be int64 [", B, "], got ", video_lengths.scalar_type(), " ", video_lengths.sizes());
  TORCH_CHECK(durations.dim() == 1 && durations.size(0) == B, op, ": durations should be [", B, "], got ",
              durations.sizes());
  checks::dtype(op, "logits", logits, false);
  checks::same_dtype(op, "candidates", candidates, "logits", logits);
  checks::same_dtype(op, "offsets", offsets, "logits", logits);
  checks::same_dtype(op, "durations", durations, "logits", logits);
  checks::same_device(op, "candidates", candidates, "logits", logits);
  checks::same_device(op, "offsets", offsets, "logits", logits);
  checks::same_device(op, "video_lengths", video_lengths, "logits", logits);
  checks::same_device(op, "durations", durations, "logits", logits);
  checks::fraction(op, "iou_threshold", threshold);
  checks::at_least_one(op, "top_n", top_n);
  checks::valid_mask(op, valid, B, N, "logits", logits);
}

}  // namespace fian_fast
