// decode on CUDA: one fused kernel (refine, sigmoid, NMS, seconds), one block per sample.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "ops/common/interval.h"
#include "ops/cuda/block_nms.cuh"
#include "ops/cuda/nms_launch.cuh"
#include "ops/checks.h"

namespace fian_fast {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void decode_kernel(const T* __restrict__ candidates, const T* __restrict__ logits,
                              const T* __restrict__ offsets, const int64_t* __restrict__ video_lengths,
                              const T* __restrict__ durations, const bool* __restrict__ valid, int n, T threshold,
                              int top_n, float* __restrict__ seg_out, float* __restrict__ score_out,
                              int64_t* __restrict__ idx_out) {
  extern __shared__ __align__(16) unsigned char smem[];
  auto sh = block_nms::Shared<T>::carve(smem, n);
  __shared__ int n_valid;
  const int64_t b = blockIdx.x;
  const T length = static_cast<T>(video_lengths[b]);
  const T* logit_b = logits + b * n;
  const T* off_b = offsets + b * 2 * n;
  const bool* valid_b = valid != nullptr ? valid + b * n : nullptr;
  if (threadIdx.x == 0) n_valid = 0;
  __syncthreads();
  int p = 1;
  while (p < n) p <<= 1;
  int local = 0;
  for (int i = threadIdx.x; i < p; i += blockDim.x) {
    bool ok = false;
    if (i < n) {
      // Default validity (the API contract): the candidate starts inside the video.
      ok = valid_b != nullptr ? valid_b[i] : candidates[2 * i] < length;
      interval::refine<T>(candidates[2 * i], candidates[2 * i + 1], off_b[2 * i], off_b[2 * i + 1], length,
                          &sh.seg[2 * i], &sh.seg[2 * i + 1]);
    }
    block_nms::fill_slot<T>(sh, i, ok, ok ? logit_b[i] : T(0));
    local += ok ? 1 : 0;
  }
  if (local) atomicAdd(&n_valid, local);
  __syncthreads();
  int64_t* idx_b = idx_out + b * top_n;
  const int kept = block_nms::greedy<T>(sh, n, n_valid, threshold, top_n, idx_b);
  const T duration = durations[b];
  for (int j = threadIdx.x; j < top_n; j += blockDim.x) {
    float* sj = seg_out + (b * top_n + j) * 2;
    if (j < kept) {
      const int64_t i = idx_b[j];
      sj[0] = static_cast<float>(sh.seg[2 * i] / length * duration);
      sj[1] = static_cast<float>(sh.seg[2 * i + 1] / length * duration);
      score_out[b * top_n + j] = static_cast<float>(T(1) / (T(1) + exp(-logit_b[i])));
    } else {
      sj[0] = 0.f;
      sj[1] = 0.f;
      score_out[b * top_n + j] = 0.f;
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> decode_cuda(const at::Tensor& candidates, const at::Tensor& logits,
                                                           const at::Tensor& offsets, const at::Tensor& video_lengths,
                                                           const at::Tensor& durations, double iou_threshold,
                                                           int64_t top_n, const std::optional<at::Tensor>& valid) {
  check_decode_args(candidates, logits, offsets, video_lengths, durations, iou_threshold, top_n, valid);
  checks::on_cuda("decode", "logits", logits);
  c10::cuda::CUDAGuard guard(logits.device());
  const int64_t B = logits.size(0), N = logits.size(1);
  const auto f32 = logits.options().dtype(at::kFloat);
  auto seg_out = at::empty({B, top_n, 2}, f32);
  auto score_out = at::empty({B, top_n}, f32);
  auto idx_out = at::empty({B, top_n}, logits.options().dtype(at::kLong));
  if (B == 0) return {seg_out, score_out, idx_out};
  if (N == 0) return {seg_out.zero_(), score_out.zero_(), idx_out.fill_(-1)};
  TORCH_CHECK(N < (1 << 30) && top_n < (1 << 30), "decode: N and top_n should be below 2^30");
  const auto cand = candidates.contiguous();
  const auto lg = logits.contiguous();
  const auto off = offsets.contiguous();
  const auto len = video_lengths.contiguous();
  const auto dur = durations.contiguous();
  const auto mask = valid.has_value() ? valid->contiguous() : at::Tensor();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(lg.scalar_type(), "decode_cuda", [&] {
    const size_t bytes = block_nms::shared_bytes<scalar_t>(N);
    auto kernel = decode_kernel<scalar_t>;
    reserve_shared(kernel, bytes, "decode", N);
    kernel<<<B, kThreads, bytes, stream>>>(
        cand.data_ptr<scalar_t>(), lg.data_ptr<scalar_t>(), off.data_ptr<scalar_t>(), len.data_ptr<int64_t>(),
        dur.data_ptr<scalar_t>(), mask.defined() ? mask.data_ptr<bool>() : nullptr, static_cast<int>(N),
        static_cast<scalar_t>(iou_threshold), static_cast<int>(top_n), seg_out.data_ptr<float>(),
        score_out.data_ptr<float>(), idx_out.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {seg_out, score_out, idx_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CUDA, m) { m.impl("decode", &decode_cuda); }

}  // namespace fian_fast
