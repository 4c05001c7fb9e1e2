// temporal_nms on CUDA: one block per sample, no host synchronization, fixed [B, top_k] output.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "ops/cuda/block_nms.cuh"
#include "ops/cuda/nms_launch.cuh"
#include "ops/checks.h"

namespace fian_fast {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void temporal_nms_kernel(const scalar_t* __restrict__ segments, const scalar_t* __restrict__ scores,
                                    const bool* __restrict__ valid, int n, at::opmath_type<scalar_t> threshold,
                                    int top_k, int64_t* __restrict__ keep) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ __align__(16) unsigned char smem[];
  auto sh = block_nms::Shared<acc_t>::carve(smem, n);
  __shared__ int n_valid;
  const int64_t b = blockIdx.x;
  const scalar_t* seg_b = segments + b * 2 * n;
  const scalar_t* score_b = scores + b * n;
  const bool* valid_b = valid != nullptr ? valid + b * n : nullptr;
  if (threadIdx.x == 0) n_valid = 0;
  __syncthreads();
  int p = 1;
  while (p < n) p <<= 1;
  int local = 0;
  for (int i = threadIdx.x; i < p; i += blockDim.x) {
    const bool ok = i < n && (valid_b == nullptr || valid_b[i]);
    block_nms::fill_slot<acc_t>(sh, i, ok, ok ? static_cast<acc_t>(score_b[i]) : acc_t(0));
    if (i < n) {
      sh.seg[2 * i] = static_cast<acc_t>(seg_b[2 * i]);
      sh.seg[2 * i + 1] = static_cast<acc_t>(seg_b[2 * i + 1]);
    }
    local += ok ? 1 : 0;
  }
  if (local) atomicAdd(&n_valid, local);
  __syncthreads();
  block_nms::greedy<acc_t>(sh, n, n_valid, threshold, top_k, keep + b * top_k);
}

at::Tensor temporal_nms_cuda(const at::Tensor& segments, const at::Tensor& scores, double iou_threshold,
                             int64_t top_k, const std::optional<at::Tensor>& valid) {
  check_temporal_nms_args(segments, scores, iou_threshold, top_k, valid);
  checks::on_cuda("temporal_nms", "segments", segments);
  c10::cuda::CUDAGuard guard(segments.device());
  const int64_t B = segments.size(0), N = segments.size(1);
  auto keep = at::empty({B, top_k}, segments.options().dtype(at::kLong));
  if (B == 0) return keep;
  if (N == 0) return keep.fill_(-1);
  TORCH_CHECK(N < (1 << 30) && top_k < (1 << 30), "temporal_nms: N and top_k should be below 2^30");
  const auto seg = segments.contiguous();
  const auto sc = scores.contiguous();
  const auto mask = valid.has_value() ? valid->contiguous() : at::Tensor();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, seg.scalar_type(), "temporal_nms_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t bytes = block_nms::shared_bytes<acc_t>(N);
    auto kernel = temporal_nms_kernel<scalar_t>;
    reserve_shared(kernel, bytes, "temporal_nms", N);
    kernel<<<B, kThreads, bytes, stream>>>(seg.data_ptr<scalar_t>(), sc.data_ptr<scalar_t>(),
                                           mask.defined() ? mask.data_ptr<bool>() : nullptr, static_cast<int>(N),
                                           static_cast<acc_t>(iou_threshold), static_cast<int>(top_k),
                                           keep.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return keep;
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CUDA, m) { m.impl("temporal_nms", &temporal_nms_cuda); }

}  // namespace fian_fast
