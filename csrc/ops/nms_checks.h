// Argument checks of iou_label, temporal_nms and decode shared by the CPU and CUDA kernels. The Python
// entry points already raise ValueError for these; the checks guard direct torch.ops calls.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace fian_fast {

inline void check_valid_mask(const char* op, const std::optional<at::Tensor>& valid, int64_t B, int64_t N,
                             const at::Tensor& like) {
  if (!valid.has_value()) return;
  TORCH_CHECK(valid->scalar_type() == at::kBool && valid->dim() == 2 && valid->size(0) == B && valid->size(1) == N,
              op, ": valid should be a bool [", B, ", ", N, "] tensor, got ", valid->scalar_type(), " ",
              valid->sizes());
  TORCH_CHECK(valid->device() == like.device(), op, ": valid should be on ", like.device(), ", got ",
              valid->device());
}

inline void check_iou_label_args(const at::Tensor& candidates, const at::Tensor& gt) {
  TORCH_CHECK((candidates.dim() == 3 || candidates.dim() == 2) && candidates.size(-1) == 2,
              "iou_label: candidates should be [B, N, 2] or [N, 2], got shape ", candidates.sizes());
  TORCH_CHECK(gt.dim() == 2 && gt.size(1) == 2, "iou_label: gt should be [B, 2], got shape ", gt.sizes());
  TORCH_CHECK(candidates.dim() == 2 || candidates.size(0) == gt.size(0),
              "iou_label: candidates and gt should have one batch size, got ", candidates.size(0), " and ", gt.size(0));
  TORCH_CHECK(candidates.scalar_type() == gt.scalar_type() && at::isFloatingType(gt.scalar_type()),
              "iou_label: candidates and gt should share one floating dtype, got ", candidates.scalar_type(), " and ",
              gt.scalar_type());
}

inline void check_nms_args(const at::Tensor& segments, const at::Tensor& scores, double threshold, int64_t top_k,
                           const std::optional<at::Tensor>& valid) {
  TORCH_CHECK(segments.dim() == 3 && segments.size(2) == 2, "temporal_nms: segments should be [B, N, 2], got shape ",
              segments.sizes());
  TORCH_CHECK(scores.dim() == 2 && scores.size(0) == segments.size(0) && scores.size(1) == segments.size(1),
              "temporal_nms: scores should be [", segments.size(0), ", ", segments.size(1), "], got ", scores.sizes());
  TORCH_CHECK(scores.scalar_type() == segments.scalar_type() && at::isFloatingType(scores.scalar_type()),
              "temporal_nms: segments and scores should share one floating dtype, got ", segments.scalar_type(),
              " and ", scores.scalar_type());
  TORCH_CHECK(scores.device() == segments.device(), "temporal_nms: segments and scores should be on one device");
  TORCH_CHECK(threshold >= 0.0 && threshold <= 1.0, "temporal_nms: iou_threshold should be in [0, 1], got ", threshold);
  TORCH_CHECK(top_k >= 1, "temporal_nms: top_k should be >= 1, got ", top_k);
  check_valid_mask("temporal_nms", valid, segments.size(0), segments.size(1), segments);
}

inline void check_decode_args(const at::Tensor& candidates, const at::Tensor& logits, const at::Tensor& offsets,
                              const at::Tensor& video_lengths, const at::Tensor& durations, double threshold,
                              int64_t top_n, const std::optional<at::Tensor>& valid) {
  TORCH_CHECK(candidates.dim() == 2 && candidates.size(1) == 2, "decode: candidates should be [N, 2], got shape ",
              candidates.sizes());
  const int64_t N = candidates.size(0);
  TORCH_CHECK(logits.dim() == 2 && logits.size(1) == N, "decode: logits should be [B, ", N, "], got ", logits.sizes());
  const int64_t B = logits.size(0);
  TORCH_CHECK(offsets.dim() == 3 && offsets.size(0) == B && offsets.size(1) == N && offsets.size(2) == 2,
              "decode: offsets should be [", B, ", ", N, ", 2], got ", offsets.sizes());
  TORCH_CHECK(video_lengths.dim() == 1 && video_lengths.size(0) == B && video_lengths.scalar_type() == at::kLong,
              "decode: video_lengths should be int64 [", B, "], got ", video_lengths.scalar_type(), " ",
              video_lengths.sizes());
  TORCH_CHECK(durations.dim() == 1 && durations.size(0) == B, "decode: durations should be [", B, "], got ",
              durations.sizes());
  const auto dt = logits.scalar_type();
  TORCH_CHECK(at::isFloatingType(dt) && candidates.scalar_type() == dt && offsets.scalar_type() == dt &&
                  durations.scalar_type() == dt,
              "decode: candidates, logits, offsets and durations should share one floating dtype");
  for (const at::Tensor* t : {&candidates, &offsets, &video_lengths, &durations}) {
    TORCH_CHECK(t->device() == logits.device(), "decode: every tensor should be on ", logits.device());
  }
  TORCH_CHECK(threshold >= 0.0 && threshold <= 1.0, "decode: iou_threshold should be in [0, 1], got ", threshold);
  TORCH_CHECK(top_n >= 1, "decode: top_n should be >= 1, got ", top_n);
  check_valid_mask("decode", valid, B, N, logits);
}

}  // namespace fian_fast
