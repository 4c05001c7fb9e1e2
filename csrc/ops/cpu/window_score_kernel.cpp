// window_score on the CPU as one GEMM per scale, without im2col.
//
// Scale s has window k and stride θ. With g = gcd(k, θ), k = g·m and θ = g·r, frames are grouped
// in blocks of g: features [B, T, C] viewed as Xb [B·T/g, g·C] (a free view when g divides T).
// Window i covers blocks i·r .. i·r + m - 1, so with W' [g·C, 3·m] the weight re-laid per block
// (W'[t·C + c, o·m + j] = w[o, c, j·g + t]),
//     Z = Xb · W'        [B, T/g, 3, m]
//     out[b, i, o] = bias[o] + Σ_j Z[b, i·r + j, o, j]
// — the sum is a strided (diagonal) view of Z. FLOPs are those of the strided convolution when
// g = θ (θ divides k, the paper's settings) and r times more otherwise. The backward runs the
// same view in reverse: dZ scattered from the output gradient (no two (i, o, j) hit one element
// of Z), dW' = Xbᵀ · dZ, dXb = dZ · W'ᵀ.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <numeric>
#include <tuple>
#include <vector>

#include "ops/checks.h"
#include "ops/window_plan.h"

namespace fian_fast {
namespace {

struct Blocked {
  int64_t g, m, r, blocks;  // block size, blocks per window, blocks per stride, T / g
};

Blocked blocked(const WindowScale& scale, int64_t T) {
  const int64_t g = std::gcd(scale.size, scale.stride);
  return {g, scale.size / g, scale.stride / g, T / g};
}

// Features [B, T, C] (contiguous) as [B·T/g, g·C]; copies only when g does not divide T.
at::Tensor blocked_features(const at::Tensor& x, const Blocked& p) {
  const int64_t B = x.size(0), C = x.size(2);
  return x.narrow(1, 0, p.blocks * p.g).reshape({B * p.blocks, p.g * C});
}

// w [3, C, k] -> W' [g·C, 3·m].
at::Tensor blocked_weight(const at::Tensor& w, const Blocked& p) {
  const int64_t C = w.size(1);
  return w.reshape({3, C, p.m, p.g}).permute({3, 1, 0, 2}).reshape({p.g * C, 3 * p.m});
}

// The [B, L, 3, m] view of Z [B, blocks, 3, m] whose element (b, i, o, j) is Z[b, i·r + j, o, j].
at::Tensor diagonal_view(const at::Tensor& z, const Blocked& p, int64_t B, int64_t L) {
  const int64_t row = 3 * p.m;
  return z.as_strided({B, L, 3, p.m}, {p.blocks * row, p.r * row, p.m, row + 1}, z.storage_offset());
}

at::Tensor window_score_cpu(const at::Tensor& features, at::TensorList weights, at::TensorList biases,
                            at::IntArrayRef window_sizes, at::IntArrayRef strides) {
  const auto plan = check_window_score(features, weights, biases, window_sizes, strides);
  const int64_t B = features.size(0), T = features.size(1);
  auto out = at::empty({B, window_total(plan), 3}, features.options());
  if (out.numel() == 0) return out;
  const auto x = features.contiguous();
  for (size_t s = 0; s < plan.size(); ++s) {
    const auto p = blocked(plan[s], T);
    const auto z = at::mm(blocked_features(x, p), blocked_weight(weights[s].contiguous(), p));
    auto dst = out.narrow(1, plan[s].offset, plan[s].count);
    at::sum_out(dst, diagonal_view(z, p, B, plan[s].count), {-1});
    dst.add_(biases[s].reshape({3}).to(out.scalar_type()));
  }
  return out;
}

std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> window_score_backward_cpu(
    const at::Tensor& grad, const at::Tensor& features, at::TensorList weights, at::IntArrayRef window_sizes,
    at::IntArrayRef strides) {
  const auto plan = check_window_score_backward(grad, features, weights, window_sizes, strides);
  const int64_t B = features.size(0), T = features.size(1), C = features.size(2);
  const auto x = features.contiguous();
  const auto g = grad.to(features.scalar_type());
  auto dx = at::zeros_like(x);
  std::vector<at::Tensor> dw, db;
  for (size_t s = 0; s < plan.size(); ++s) {
    const int64_t L = plan[s].count;
    const auto gs = g.narrow(1, plan[s].offset, L);  // [B, L, 3]
    db.push_back(gs.sum(at::IntArrayRef{0, 1}));
    if (B == 0) {
      dw.push_back(at::zeros_like(weights[s]));
      continue;
    }
    const auto p = blocked(plan[s], T);
    auto dz = at::zeros({B * p.blocks, 3 * p.m}, x.options());
    diagonal_view(dz, p, B, L).copy_(gs.unsqueeze(-1).expand({B, L, 3, p.m}));
    const auto xb = blocked_features(x, p);
    dw.push_back(at::mm(xb.t(), dz).reshape({p.g, C, 3, p.m}).permute({2, 1, 3, 0}).reshape({3, C, plan[s].size}));
    const auto wt = blocked_weight(weights[s].contiguous(), p).t();  // [3·m, g·C]
    if (p.blocks * p.g == T) {
      dx.view({B * p.blocks, p.g * C}).addmm_(dz, wt);  // accumulate in place, no temporary
    } else {
      dx.narrow(1, 0, p.blocks * p.g).add_(at::mm(dz, wt).view({B, p.blocks * p.g, C}));
    }
  }
  return {dx, dw, db};
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CPU, m) {
  m.impl("window_score", &window_score_cpu);
  m.impl("window_score_backward", &window_score_backward_cpu);
}

}  // namespace fian_fast
