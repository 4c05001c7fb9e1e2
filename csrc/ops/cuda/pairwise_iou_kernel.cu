#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "ops/common/interval.h"

namespace fian_fast {
namespace {

template <typename scalar_t>
__global__ void pairwise_iou_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                    scalar_t* __restrict__ out, int64_t B, int64_t N, int64_t M) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t total = B * N * M;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)blockDim.x * gridDim.x) {
    const int64_t j = idx % M;
    const int64_t row = idx / M;  // batch * N + i
    const int64_t batch = row / N;
    const scalar_t* pb = b + (batch * M + j) * 2;
    out[idx] = static_cast<scalar_t>(interval::iou<acc_t>(
        static_cast<acc_t>(a[row * 2]), static_cast<acc_t>(a[row * 2 + 1]),
        static_cast<acc_t>(pb[0]), static_cast<acc_t>(pb[1])));
  }
}

at::Tensor pairwise_iou_cuda(const at::Tensor& a, const at::Tensor& b) {
  check_pairwise_iou_args(a, b);
  checks::on_cuda("pairwise_iou", "a", a);
  c10::cuda::CUDAGuard guard(a.device());
  const int64_t B = a.size(0), N = a.size(1), M = b.size(1);
  auto out = at::empty({B, N, M}, a.options());
  if (out.numel() == 0) return out;
  auto ac = a.contiguous();
  auto bc = b.contiguous();
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((out.numel() + threads - 1) / threads, 65535);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "pairwise_iou_cuda", [&] {
    pairwise_iou_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        ac.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, N, M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CUDA, m) { m.impl("pairwise_iou", &pairwise_iou_cuda); }

}  // namespace fian_fast
