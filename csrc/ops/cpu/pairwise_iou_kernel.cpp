#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "ops/common/interval.h"

namespace fian_fast {
namespace {

at::Tensor pairwise_iou_cpu(const at::Tensor& a, const at::Tensor& b) {
  check_pairwise_iou_args(a, b);
  const int64_t B = a.size(0), N = a.size(1), M = b.size(1);
  auto out = at::empty({B, N, M}, a.options());
  if (out.numel() == 0) return out;
  auto ac = a.contiguous();
  auto bc = b.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "pairwise_iou_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pa = ac.data_ptr<scalar_t>();
    const scalar_t* pb = bc.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * N, 64, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t batch = row / N;
        const acc_t s1 = pa[row * 2], e1 = pa[row * 2 + 1];
        const scalar_t* pbb = pb + batch * M * 2;
        scalar_t* dst = po + row * M;
        for (int64_t j = 0; j < M; ++j) {
          dst[j] = static_cast<scalar_t>(
              interval::iou<acc_t>(s1, e1, static_cast<acc_t>(pbb[2 * j]), static_cast<acc_t>(pbb[2 * j + 1])));
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CPU, m) { m.impl("pairwise_iou", &pairwise_iou_cpu); }

}  // namespace fian_fast
