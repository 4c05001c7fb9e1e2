// window_score on CUDA: one kernel scores the windows of every scale (forward); the backward
// is free of atomics, so its gradients are deterministic.
//
// Window n of scale s covers frames [i·θ_s, i·θ_s + k_s) of a sample; with features [B, T, C]
// contiguous those k_s·C values are one contiguous run. The weights of all scales are first
// gathered tap-major, wt[o, Σk_<s + t, c] = w_s[o, c, t] (one small copy, [3, Σk, C]), so that a
// warp reading 32 channels of one tap reads 32 adjacent values in the forward and in the
// features gradient. A forward block scores one window for kSamples samples, reusing every
// weight it loads kSamples times.
//
// Backward (loop bodies in ops/common/window_grad.h, run on the host by the C++ tests):
// - dx: one thread per (frame, channel, group of kSamples samples), a gather over the windows of
//   every scale that cover the frame; each weight loaded serves the kSamples samples.
// - dW: the reduction over B·L_s windows is cut into `chunks` batch chunks (grid axis y), each
//   block writing float partial sums [chunks, 3, Σk·C]; a second kernel adds the chunks in order.
//   With one chunk the first kernel writes dW directly.
// - db: one block per scale.
// dW_s and db_s are separate allocations, one per scale, as the schema's fresh outputs require.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "ops/common/window_grad.h"
#include "ops/checks.h"
#include "ops/window_plan.h"

namespace fian_fast {
namespace {

using window_grad::kMaxScales;
using window_grad::Scales;
constexpr int kThreads = 128;
constexpr int kSamples = 4;       // samples per forward block / dx thread: each loaded weight is used this often
constexpr int kGradThreads = 256;
constexpr int kMaxChunks = 64;    // batch chunks of the weight-gradient reduction

template <typename T>
using ScaleTable = window_grad::Table<T>;

__device__ __forceinline__ int scale_of_candidate(const Scales& sc, int64_t n) {
  int s = 0;
  while (s + 1 < sc.n && n >= sc.offset[s + 1]) ++s;
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
  const Scales& sc = tab.geo;
  const int64_t n = blockIdx.x, b0 = (int64_t)blockIdx.y * kSamples;
  const int64_t left = B - b0;
  const int nb = left < kSamples ? static_cast<int>(left) : kSamples;
  const int s = scale_of_candidate(sc, n);
  const int64_t k = sc.size[s];
  const int64_t start = (n - sc.offset[s]) * sc.stride[s];
  acc_t acc[3 * kSamples];
#pragma unroll
  for (int j = 0; j < 3 * kSamples; ++j) acc[j] = 0;
  for (int64_t t = 0; t < k; ++t) {
    const T* w0 = wt + (sc.kprefix[s] + t) * C;
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

// Grid-stride over (sample group, frame, channel), channel fastest: weight reads and the dx
// writes coalesce; the output gradient is read by every lane at one address (a broadcast).
template <typename T>
__global__ void window_score_dx_kernel(const T* __restrict__ grad, const T* __restrict__ wt, Scales sc, int64_t B,
                                       int64_t frames, int64_t C, int64_t taps, int64_t total, T* __restrict__ dx) {
  const int64_t work = window_grad::dx_threads(B, frames, C, kSamples);
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < work;
       idx += (int64_t)blockDim.x * gridDim.x) {
    window_grad::dx_thread<kSamples, T, at::opmath_type<T>>(idx, grad, wt, sc, B, frames, C, taps, total, dx);
  }
}

// grid (ceil(Σk·C / threads), chunks): thread (tap, c) of block row j sums batch chunk j.
template <typename T>
__global__ void window_score_dw_kernel(const T* __restrict__ grad, const T* __restrict__ x, ScaleTable<T> tab,
                                       int64_t B, int64_t frames, int64_t C, int64_t total, int64_t taps,
                                       at::opmath_type<T>* __restrict__ partial) {
  const int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (q >= taps * C) return;
  window_grad::dw_thread<T, at::opmath_type<T>>(q, blockIdx.y, gridDim.y, grad, x, tab, B, frames, C, total, taps,
                                                partial);
}

// One thread per (tap, c): dW = the chunks' partial sums added in chunk order.
template <typename T>
__global__ void window_score_dw_reduce_kernel(const at::opmath_type<T>* __restrict__ partial, ScaleTable<T> tab,
                                              int64_t chunks, int64_t C, int64_t taps) {
  const int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  if (q >= taps * C) return;
  window_grad::dw_reduce_thread<T, at::opmath_type<T>>(q, partial, chunks, tab, C, taps);
}

// grid (scales): db_s[o] = Σ_b Σ_i grad[b, offset_s + i, o].
template <typename T>
__global__ void window_score_db_kernel(const T* __restrict__ grad, ScaleTable<T> tab, int64_t B, int64_t total) {
  using acc_t = at::opmath_type<T>;
  const int s = blockIdx.x;
  const int64_t L = tab.geo.count[s], off = tab.geo.offset[s];
  acc_t a[3] = {0, 0, 0};
  for (int64_t r = threadIdx.x; r < B * L; r += blockDim.x) {
    const T* g = grad + ((r / L) * total + off + r % L) * 3;
    a[0] += static_cast<acc_t>(g[0]);
    a[1] += static_cast<acc_t>(g[1]);
    a[2] += static_cast<acc_t>(g[2]);
  }
  block_sum<3>(a);
  if (threadIdx.x == 0) {
    T* db = tab.grad_bias[s];
    db[0] = static_cast<T>(a[0]);
    db[1] = static_cast<T>(a[1]);
    db[2] = static_cast<T>(a[2]);
  }
}

Scales make_scales(const std::vector<WindowScale>& plan) {
  Scales sc{};
  sc.n = static_cast<int>(plan.size());
  int64_t kprefix = 0;
  for (size_t s = 0; s < plan.size(); ++s) {
    sc.size[s] = plan[s].size;
    sc.stride[s] = plan[s].stride;
    sc.count[s] = plan[s].count;
    sc.offset[s] = plan[s].offset;
    sc.kprefix[s] = kprefix;
    kprefix += plan[s].size;
  }
  return sc;
}

// Batch chunks of the weight-gradient reduction: enough blocks for about two waves of the
// device's multiprocessors, each chunk at least one sample, at most kMaxChunks.
int64_t weight_grad_chunks(int64_t B, int64_t blocks_per_chunk, int device) {
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t target = 2 * static_cast<int64_t>(sms) * (2048 / kGradThreads);
  int64_t chunks = (target + blocks_per_chunk - 1) / std::max<int64_t>(blocks_per_chunk, 1);
  chunks = std::min<int64_t>(chunks, std::min<int64_t>(B, kMaxChunks));
  return std::max<int64_t>(chunks, 1);
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
  checks::on_cuda("window_score", "features", features);
  TORCH_CHECK(scales <= kMaxScales, "window_score (CUDA kernel): at most ", kMaxScales, " scales, got ", scales);
  TORCH_CHECK(features.size(0) <= 65535LL * kSamples, "window_score (CUDA kernel): batch size above ",
              65535LL * kSamples, ": ", features.size(0));
}

at::Tensor window_score_cuda(const at::Tensor& features, at::TensorList weights, at::TensorList biases,
                             at::IntArrayRef window_sizes, at::IntArrayRef strides) {
  const auto plan = check_window_score(features, weights, biases, window_sizes, strides);
  check_cuda(features, weights, plan.size());
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
    ScaleTable<scalar_t> tab{};
    tab.geo = make_scales(plan);
    for (size_t s = 0; s < plan.size(); ++s) tab.bias[s] = bias[s].data_ptr<scalar_t>();
    window_score_fwd_kernel<scalar_t><<<dim3(N, groups), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), wt.data_ptr<scalar_t>(), tab, B, T, C, taps, N, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, std::vector<at::Tensor>, std::vector<at::Tensor>> window_score_backward_cuda(
    const at::Tensor& grad, const at::Tensor& features, at::TensorList weights, at::IntArrayRef window_sizes,
    at::IntArrayRef strides) {
  const auto plan = check_window_score_backward(grad, features, weights, window_sizes, strides);
  check_cuda(features, weights, plan.size());
  const int64_t B = features.size(0), T = features.size(1), C = features.size(2), N = window_total(plan);
  c10::cuda::CUDAGuard guard(features.device());
  const auto x = features.contiguous();
  const auto g = grad.to(x.scalar_type()).contiguous();
  const auto w = contiguous_all(weights, x.scalar_type());
  int64_t taps = 0;
  for (const auto& scale : plan) taps += scale.size;
  auto dx = at::empty_like(x);
  std::vector<at::Tensor> dw, db;  // one fresh allocation per scale
  for (const auto& scale : plan) {
    dw.push_back(B == 0 ? at::zeros({3, C, scale.size}, x.options()) : at::empty({3, C, scale.size}, x.options()));
    db.push_back(B == 0 ? at::zeros({3}, x.options()) : at::empty({3}, x.options()));
  }
  if (B == 0) return {dx, dw, db};
  const auto wt = tap_major(w);
  auto stream = c10::cuda::getCurrentCUDAStream();
  // No channels (C = 0) leaves dx and dW empty: a launch of zero blocks would be an error.
  const int64_t dx_work = window_grad::dx_threads(B, T, C, kSamples);
  const int64_t dx_blocks = std::min<int64_t>((dx_work + kGradThreads - 1) / kGradThreads, 65535LL * 8);
  const int64_t dw_blocks = (taps * C + kGradThreads - 1) / kGradThreads;
  const int64_t chunks = dw_blocks > 0 ? weight_grad_chunks(B, dw_blocks, features.get_device()) : 1;
  // float partials of the chunked reduction (none with one chunk: the first kernel writes dW)
  const auto acc_type = at::toOpMathType(x.scalar_type());
  auto partial = at::empty({chunks > 1 ? chunks * 3 * taps * C : 0}, x.options().dtype(acc_type));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "window_score_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    ScaleTable<scalar_t> tab{};
    tab.geo = make_scales(plan);
    for (size_t s = 0; s < plan.size(); ++s) {
      tab.grad_weight[s] = dw[s].data_ptr<scalar_t>();
      tab.grad_bias[s] = db[s].data_ptr<scalar_t>();
    }
    if (dx_blocks > 0) {
      window_score_dx_kernel<scalar_t><<<dx_blocks, kGradThreads, 0, stream>>>(
          g.data_ptr<scalar_t>(), wt.data_ptr<scalar_t>(), tab.geo, B, T, C, taps, N, dx.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (dw_blocks > 0) {
      acc_t* part = chunks > 1 ? partial.data_ptr<acc_t>() : nullptr;
      window_score_dw_kernel<scalar_t><<<dim3(dw_blocks, chunks), kGradThreads, 0, stream>>>(
          g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), tab, B, T, C, N, taps, part);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (chunks > 1) {
        window_score_dw_reduce_kernel<scalar_t><<<dw_blocks, kGradThreads, 0, stream>>>(part, tab, chunks, C, taps);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    }
    window_score_db_kernel<scalar_t><<<static_cast<unsigned>(plan.size()), kGradThreads, 0, stream>>>(
        g.data_ptr<scalar_t>(), tab, B, N);
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
