// iou_label on CUDA: one elementwise kernel writing IoU, the positive flag and offset targets.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "ops/common/interval.h"
#include "ops/checks.h"

namespace fian_fast {
namespace {

template <typename scalar_t>
__global__ void iou_label_kernel(const scalar_t* __restrict__ candidates, const scalar_t* __restrict__ gt,
                                 int64_t B, int64_t N, bool shared, at::opmath_type<scalar_t> threshold,
                                 scalar_t* __restrict__ iou, bool* __restrict__ positive,
                                 scalar_t* __restrict__ offsets) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = B * N;
  for (int64_t row = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; row < total;
       row += (int64_t)blockDim.x * gridDim.x) {
    const int64_t b = row / N;
    const int64_t c = shared ? row - b * N : row;
    const acc_t cs = static_cast<acc_t>(candidates[2 * c]), ce = static_cast<acc_t>(candidates[2 * c + 1]);
    const acc_t gs = static_cast<acc_t>(gt[2 * b]), ge = static_cast<acc_t>(gt[2 * b + 1]);
    const acc_t o = interval::iou<acc_t>(cs, ce, gs, ge);
    iou[row] = static_cast<scalar_t>(o);
    positive[row] = o > threshold;
    offsets[2 * row] = static_cast<scalar_t>(gs - cs);
    offsets[2 * row + 1] = static_cast<scalar_t>(ge - ce);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> iou_label_cuda(const at::Tensor& candidates, const at::Tensor& gt,
                                                               double tau) {
  check_iou_label_args(candidates, gt);
  checks::on_cuda("iou_label", "gt", gt);
  c10::cuda::CUDAGuard guard(gt.device());
  const int64_t B = gt.size(0), N = candidates.size(-2);
  auto iou = at::empty({B, N}, gt.options());
  auto positive = at::empty({B, N}, gt.options().dtype(at::kBool));
  auto offsets = at::empty({B, N, 2}, gt.options());
  if (B * N == 0) return {iou, positive, offsets};
  const auto cand = candidates.contiguous();
  const auto g = gt.contiguous();
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((B * N + threads - 1) / threads, 65535);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gt.scalar_type(), "iou_label_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    iou_label_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        cand.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), B, N, candidates.dim() == 2, static_cast<acc_t>(tau),
        iou.data_ptr<scalar_t>(), positive.data_ptr<bool>(), offsets.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {iou, positive, offsets};
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CUDA, m) { m.impl("iou_label", &iou_label_cuda); }

}  // namespace fian_fast
