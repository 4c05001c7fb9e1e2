#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "ops/common/interval.h"
#include "ops/common/nms.h"
#include "ops/checks.h"

namespace fian_fast {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> decode_cpu(const at::Tensor& candidates, const at::Tensor& logits,
                                                          const at::Tensor& offsets, const at::Tensor& video_lengths,
                                                          const at::Tensor& durations, double iou_threshold,
                                                          int64_t top_n, const std::optional<at::Tensor>& valid) {
  check_decode_args(candidates, logits, offsets, video_lengths, durations, iou_threshold, top_n, valid);
  const int64_t B = logits.size(0), N = logits.size(1);
  const auto f32 = logits.options().dtype(at::kFloat);
  auto seg_out = at::empty({B, top_n, 2}, f32);
  auto score_out = at::empty({B, top_n}, f32);
  auto idx_out = at::empty({B, top_n}, logits.options().dtype(at::kLong));
  if (B == 0) return {seg_out, score_out, idx_out};
  const auto cand = candidates.contiguous();
  const auto lg = logits.contiguous();
  const auto off = offsets.contiguous();
  const auto len = video_lengths.contiguous();
  const auto dur = durations.contiguous();
  const auto mask = valid.has_value() ? valid->contiguous() : at::Tensor();
  const bool* pv = mask.defined() ? mask.data_ptr<bool>() : nullptr;
  float* pseg = seg_out.data_ptr<float>();
  float* pscore = score_out.data_ptr<float>();
  int64_t* pidx = idx_out.data_ptr<int64_t>();
  const int64_t* plen = len.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(lg.scalar_type(), "decode_cpu", [&] {
    const scalar_t* pc = cand.data_ptr<scalar_t>();
    const scalar_t* pl = lg.data_ptr<scalar_t>();
    const scalar_t* po = off.data_ptr<scalar_t>();
    const scalar_t* pd = dur.data_ptr<scalar_t>();
    const scalar_t threshold = static_cast<scalar_t>(iou_threshold);
    // Samples in chunks of about 2^15 candidates (see temporal_nms_kernel.cpp).
    at::parallel_for(0, B, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(N, 1)), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> box(2 * N);
      std::vector<int64_t> heap(N);
      std::vector<char> own_valid(N);
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t length = static_cast<scalar_t>(plen[b]);
        const scalar_t* ob = po + b * N * 2;
        for (int64_t i = 0; i < N; ++i) {
          interval::refine<scalar_t>(pc[2 * i], pc[2 * i + 1], ob[2 * i], ob[2 * i + 1], length, &box[2 * i],
                                     &box[2 * i + 1]);
        }
        const bool* vb = nullptr;
        if (pv != nullptr) {
          vb = pv + b * N;
        } else {
          // Default validity (the API contract): the candidate starts inside the video.
          for (int64_t i = 0; i < N; ++i) own_valid[i] = pc[2 * i] < length;
          vb = reinterpret_cast<const bool*>(own_valid.data());
        }
        int64_t* kb = pidx + b * top_n;
        const int64_t kept =
            nms::greedy_nms<scalar_t, scalar_t>(pl + b * N, box.data(), vb, N, threshold, top_n, kb, heap.data());
        const scalar_t duration = pd[b];
        for (int64_t j = 0; j < top_n; ++j) {
          float* sj = pseg + (b * top_n + j) * 2;
          if (j < kept) {
            const int64_t i = kb[j];
            sj[0] = static_cast<float>(box[2 * i] / length * duration);
            sj[1] = static_cast<float>(box[2 * i + 1] / length * duration);
            pscore[b * top_n + j] = static_cast<float>(scalar_t(1) / (scalar_t(1) + std::exp(-pl[b * N + i])));
          } else {
            sj[0] = 0.f;
            sj[1] = 0.f;
            pscore[b * top_n + j] = 0.f;
          }
        }
      }
    });
  });
  return {seg_out, score_out, idx_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CPU, m) { m.impl("decode", &decode_cpu); }

}  // namespace fian_fast
