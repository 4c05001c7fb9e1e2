// window_score on CUDA: one kernel scores the windows of every scale (forward); the backward is
// three kernels (features, weights, biases), each over all scales and free of atomics, so the
// gradients are deterministic.
//
// Window n of scale s covers frames [i·θ_s, i·θ_s + k_s) of a sample; with features [B, T, C]
// contiguous those k_s·C values are one contiguous run. The weights of all scales are first
// gathered tap-major, wt[o, Σk_<s + t, c] = w_s[o, c, t] (one small copy, [3, Σk, C]), so that a
// warp reading 32 channels of one tap reads 32 adjacent values in the forward and in the
// features gradient. A forward block scores one window for kSamples samples, reusing every
// weight it loads kSamples times.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "ops/window_plan.h"

namespace fian_fast {
namespace {

constexpr int kMaxScales = 16;
constexpr int kThreads = 128;
constexpr int kSamples = 4;  // samples per forward block: each loaded weight is used this often

template <typename T>
struct ScaleTable {
  const T* weight[kMaxScales];  // [3, C, k_s], contiguous
  const T* bias[kMaxScales];    // [3]
  int64_t size[kMaxScales];
  int64_t stride[kMaxScales];
  int64_t count[kMaxScales];
  int64_t offset[kMaxScales];   // first candidate of the scale
  int64_t wbase[kMaxScales];    // first element of the scale in the flat weight gradient
  int64_t kprefix[kMaxScales];  // Σ k of the scales before (for the weight-gradient threads)
  int n;
};

template <typename T>
__device__ __forceinline__ int scale_of_candidate(const ScaleTable<T>& tab, int64_t n) {
  int s = 0;
  while (s + 1 < tab.n && n >= tab.offset[s + 1]) ++s;
  return s;
}

// Sum of NV values over the block (blockDim.x a multiple of 32); the result is valid in thread 0.
template <int NV, typename A>
__device__ void block_sum(A (&v)[NV]) {
  __shared__ A partial[NV][32];
#pragma unroll
  for (int j = 0; j < NV; ++j) {
    for (int d = 16; d > 0; d >>= 1) v[j] += __shfl_down_sync(0xffffffffu, v[j], d);
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < NV; ++j) partial[j][warp] = v[j];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) {
#pragma unroll
      for (int j = 0; j < NV; ++j) v[j] += partial[j][w];
    }
  }
}

// grid (N, ceil(B / kSamples)): block (n, g) computes out[b, n, 0..2] for the samples
// b = g·kSamples .. g·kSamples + kSamples - 1.
template <typename T>
__global__ void window_score_fwd_kernel(const T* __restrict__ x, const T* __restrict__ wt, ScaleTable<T> tab,
                                        int64_t B, int64_t frames, int64_t C, int64_t taps, int64_t total,
                                        T* __restrict__ out) {
  using acc_t = at::opmath_type<T>;
  const int64_t n = blockIdx.x, b0 = (int64_t)blockIdx.y * kSamples;
  const int64_t left = B - b0;
  const int nb = left < kSamples ? static_cast<int>(left) : kSamples;
  const int s = scale_of_candidate(tab, n);
  const int64_t k = tab.size[s];
  const int64_t start = (n - tab.offset[s]) * tab.stride[s];
  acc_t acc[3 * kSamples];
#pragma unroll
  for (int j = 0; j < 3 * kSamples; ++j) acc[j] = 0;
  for (int64_t t = 0; t < k; ++t) {
    const T* w0 = wt + (tab.kprefix[s] + t) * C;
    const T* w1 = w0 + taps * C;
    const T* w2 = w1 + taps * C;
    const T* xt = x + (b0 * frames + start + t) * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      const acc_t u0 = static_cast<acc_t>(w0[c]), u1 = static_cast<acc_t>(w1[c]), u2 = static_cast<acc_t>(w2[c]);
#pragma unroll
      for (int bb = 0; bb < kSamples; ++bb) {
        if (bb < nb) {
          const acc_t v = static_cast<acc_t>(xt[bb * frames * C + c]);
          acc[3 * bb] += v * u0;
          acc[3 * bb + 1] += v * u1;
          acc[3 * bb + 2] += v * u2;
        }
      }
    }
  }
  block_sum<3 * kSamples>(acc);
  if (threadIdx.x == 0) {
    const T* bias = tab.bias[s];
#pragma unroll
    for (int bb = 0; bb < kSamples; ++bb) {
      if (bb < nb) {  // constant indices keep acc in registers
        T* o = out + ((b0 + bb) * total + n) * 3;
#pragma unroll
        for (int j = 0; j < 3; ++j) o[j] = static_cast<T>(acc[3 * bb + j] + static_cast<acc_t>(bias[j]));
      }
    }
  }
}

// One thread per element (b, f, c) of the features gradient: a gather over the windows of every
// scale that cover frame f.
template <typename T>
__global__ void window_score_dx_kernel(const T* __restrict__ grad, const T* __restrict__ wt, ScaleTable<T> tab,
                                       int64_t B, int64_t frames, int64_t C, int64_t taps, int64_t total,
                                       T* __restrict__ dx) {
  using acc_t = at::opmath_type<T>;
  const int64_t numel = B * frames * C;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < numel;
       idx += (int64_t)blockDim.x * gridDim.x) {
    const int64_t c = idx % C;
    const int64_t f = (idx / C) % frames;
    const int64_t b = idx / (C * frames);
    acc_t acc = 0;
    for (int s = 0; s < tab.n; ++s) {
      const int64_t k = tab.size[s], st = tab.stride[s];
      const int64_t lo = f >= k ? (f - k) / st + 1 : 0;
      const int64_t hi = min(tab.count[s] - 1, f / st);
      for (int64_t i = lo; i <= hi; ++i) {
        const T* w0 = wt + (tab.kprefix[s] + f - i * st) * C + c;
        const T* g = grad + (b * total + tab.offset[s] + i) * 3;
        acc += static_cast<acc_t>(g[0]) * static_cast<acc_t>(w0[0]) +
               static_cast<acc_t>(g[1]) * static_cast<acc_t>(w0[taps * C]) +
               static_cast<acc_t>(g[2]) * static_cast<acc_t>(w0[2 * taps * C]);
      }
    }
    dx[idx] = static_cast<T>(acc);
  }
}

// One thread per (scale, tap t, channel c), channel fastest so that feature reads coalesce:
// dW_s[o, c, t] = Σ_b Σ_i grad[b, i, o] · x[b, i·θ_s + t, c].
template <typename T>
__global__ void window_score_dw_kernel(const T* __restrict__ grad, const T* __restrict__ x, ScaleTable<T> tab,
                                       int64_t B, int64_t frames, int64_t C, int64_t total, int64_t taps,
                                       T* __restrict__ dw) {
  using acc_t = at::opmath_type<T>;
  const int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (q >= taps * C) return;
  const int64_t tap = q / C, c = q % C;
  int s = 0;
  while (s + 1 < tab.n && tap >= tab.kprefix[s + 1]) ++s;
  const int64_t t = tap - tab.kprefix[s];
  const int64_t k = tab.size[s], st = tab.stride[s], L = tab.count[s];
  acc_t a0 = 0, a1 = 0, a2 = 0;
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + (b * frames + t) * C + c;
    const T* gb = grad + (b * total + tab.offset[s]) * 3;
    for (int64_t i = 0; i < L; ++i) {
      const acc_t v = static_cast<acc_t>(xb[i * st * C]);
      a0 += v * static_cast<acc_t>(gb[3 * i]);
      a1 += v * static_cast<acc_t>(gb[3 * i + 1]);
      a2 += v * static_cast<acc_t>(gb[3 * i + 2]);
    }
  }
  T* out = dw + tab.wbase[s];
  out[c * k + t] = static_cast<T>(a0);
  out[(C + c) * k + t] = static_cast<T>(a1);
  out[(2 * C + c) * k + t] = static_cast<T>(a2);
}

// grid (scales): db[s, o] = Σ_b Σ_i grad[b, offset_s + i, o].
template <typename T>
__global__ void window_score_db_kernel(const T* __restrict__ grad, ScaleTable<T> tab, int64_t B, int64_t total,
                                       T* __restrict__ db) {
  using acc_t = at::opmath_type<T>;
  const int s = blockIdx.x;
  const int64_t L = tab.count[s];
  acc_t a[3] = {0, 0, 0};
  for (int64_t r = threadIdx.x; r < B * L; r += blockDim.x) {
    const T* g = grad + ((r / L) * total + tab.offset[s] + r % L) * 3;
    a[0] += static_cast<acc_t>(g[0]);
    a[1] += static_cast<acc_t>(g[1]);
    a[2] += static_cast<acc_t>(g[2]);
  }
  block_sum<3>(a);
  if (threadIdx.x == 0) {
    db[3 * s] = static_cast<T>(a[0]);
    db[3 * s + 1] = static_cast<T>(a[1]);
    db[3 * s + 2] = static_cast<T>(a[2]);
  }
}

template <typename T>
ScaleTable<T> make_table(const std::vector<WindowScale>& plan, const std::vector<at::Tensor>& weights,
                         const std::vector<at::Tensor>& biases, int64_t C) {
  ScaleTable<T> tab{};
  tab.n = static_cast<int>(plan.size());
  int64_t wbase = 0, kprefix = 0;
  for (size_t s = 0; s < plan.size(); ++s) {
    tab.weight[s] = weights[s].data_ptr<T>();
    tab.bias[s] = biases.empty() ? nullptr : biases[s].data_ptr<T>();
    tab.size[s] = plan[s].size;
    tab.stride[s] = plan[s].stride;
    tab.count[s] = plan[s].count;
    tab.offset[s] = plan[s].offset;
    tab.wbase[s] = wbase;
    tab.kprefix[s] = kprefix;
    wbase += 3 * C * plan[s].size;
    kprefix += plan[s].size;
  }
  return tab;
}

std::vector<at::Tensor> contiguous_all(at::TensorList ts, at::ScalarType dtype) {
  std::vector<at::Tensor> out;
  for (const auto& t : ts) out.push_back(t.to(dtype).contiguous());
  return out;
}

// All scales' weights tap-major, [3, Σk, C] contiguous (one copy kernel).
at::Tensor tap_major(const std::vector<at::Tensor>& weights) {
  std::vector<at::Tensor> views;
  for (const auto& w : weights) views.push_back(w.permute({0, 2, 1}));
  return at::cat(views, 1).contiguous();
}

void check_cuda(const at::Tensor& features, at::TensorList weights, size_t scales) {
  TORCH_CHECK(features.is_cuda(), "window_score (CUDA kernel): features should be on a CUDA device");
  TORCH_CHECK(scales <= kMaxScales, "window_score (CUDA kernel): at most ", kMaxScales, " scales, got ", scales);
  TORCH_CHECK(features.size(0) <= 65535LL * kSamples, "window_score (CUDA kernel): batch size above ",
              65535LL * kSamples, ": ", features.size(0));
}

at::Tensor window_score_cuda(const at::Tensor& features, at::TensorList weights, at::TensorList biases,
                             at::IntArrayRef window_sizes, at::IntArrayRef strides) {
  const auto plan = check_window_score(features, weights, window_sizes, strides);
  check_cuda(features, weights, plan.size());
  TORCH_CHECK(biases.size() == plan.size(), "window_score: expected one bias per scale (", plan.size(), "), got ",
              biases.size());
  for (size_t s = 0; s < plan.size(); ++s) {
    TORCH_CHECK(biases[s].numel() == 3 && biases[s].device() == features.device(), "window_score: biases[", s,
                "] should hold 3 elements on ", features.device(), ", got ", biases[s].sizes());
  }
  c10::cuda::CUDAGuard guard(features.device());
  const int64_t B = features.size(0), T = features.size(1), C = features.size(2), N = window_total(plan);
  auto out = at::empty({B, N, 3}, features.options());
  if (out.numel() == 0) return out;
  const auto x = features.contiguous();
  const auto w = contiguous_all(weights, x.scalar_type());
  const auto bias = contiguous_all(biases, x.scalar_type());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const auto wt = tap_major(w);
  const int64_t taps = wt.size(1);
  const int64_t groups = (B + kSamples - 1) / kSamples;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "window_score_cuda", [&] {
    const auto tab = make_table<scalar_t>(plan, w, bias, C);
    window_score_fwd_kernel<scalar_t><<<dim3(N, groups), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), wt.data_ptr<scalar_t>(), tab, B, T, C, taps, N, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> window_score_backward_cuda(
    const at::Tensor& grad, const at::Tensor& features, at::TensorList weights, at::IntArrayRef window_sizes,
    at::IntArrayRef strides) {
  const auto plan = check_window_score(features, weights, window_sizes, strides);
  check_cuda(features, weights, plan.size());
  const int64_t B = features.size(0), T = features.size(1), C = features.size(2), N = window_total(plan);
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == B && grad.size(1) == N && grad.size(2) == 3,
              "window_score_backward: grad should be [", B, ", ", N, ", 3], got ", grad.sizes());
  TORCH_CHECK(grad.device() == features.device(), "window_score_backward: grad should be on ", features.device(),
              ", got ", grad.device());
  c10::cuda::CUDAGuard guard(features.device());
  const auto x = features.contiguous();
  const auto g = grad.to(x.scalar_type()).contiguous();
  const auto w = contiguous_all(weights, x.scalar_type());
  int64_t taps = 0;
  for (const auto& scale : plan) taps += scale.size;
  auto dx = at::empty_like(x);
  auto dw_flat = at::empty({3 * C * taps}, x.options());
  auto db_flat = at::empty({static_cast<int64_t>(3 * plan.size())}, x.options());
  std::vector<at::Tensor> dw, db;
  for (size_t s = 0, base = 0; s < plan.size(); base += 3 * C * plan[s].size, ++s) {
    dw.push_back(dw_flat.narrow(0, base, 3 * C * plan[s].size).view({3, C, plan[s].size}));
    db.push_back(db_flat.narrow(0, 3 * s, 3));
  }
  if (B == 0) {
    dw_flat.zero_();
    db_flat.zero_();
    return {dx, dw, db};
  }
  const auto wt = tap_major(w);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "window_score_backward_cuda", [&] {
    const auto tab = make_table<scalar_t>(plan, w, {}, C);
    const int threads = 256;
    const int64_t numel = B * T * C;
    // No channels (C = 0) leaves dx and dW empty: a launch of zero blocks would be an error.
    const int64_t dx_blocks = std::min<int64_t>((numel + threads - 1) / threads, 65535 * 8);
    if (dx_blocks > 0) {
      window_score_dx_kernel<scalar_t><<<dx_blocks, threads, 0, stream>>>(
          g.data_ptr<scalar_t>(), wt.data_ptr<scalar_t>(), tab, B, T, C, taps, N, dx.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    const int64_t dw_blocks = (taps * C + threads - 1) / threads;
    if (dw_blocks > 0) {
      window_score_dw_kernel<scalar_t><<<dw_blocks, threads, 0, stream>>>(
          g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), tab, B, T, C, N, taps, dw_flat.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    window_score_db_kernel<scalar_t><<<static_cast<unsigned>(plan.size()), threads, 0, stream>>>(
        g.data_ptr<scalar_t>(), tab, B, N, db_flat.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dx, dw, db};
}

}  // namespace

TORCH_LIBRARY_IMPL(fian_fast, CUDA, m) {
  m.impl("window_score", &window_score_cuda);
  m.impl("window_score_backward", &window_score_backward_cuda);
}

}  // namespace fian_fast
