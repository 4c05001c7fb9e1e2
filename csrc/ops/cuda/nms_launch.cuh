// Launch helpers of the block-NMS kernels: dynamic shared memory beyond the 48 KiB default.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime.h>

namespace fian_fast {

template <typename Kernel>
inline void reserve_shared(Kernel kernel, size_t bytes, const char* op, int64_t n) {
  int device = c10::cuda::current_device();
  int optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  // A small margin for the kernel's static shared variables.
  TORCH_CHECK(bytes + 256 <= static_cast<size_t>(optin), op, ": ", n, " candidates per sample need ", bytes,
              " bytes of shared memory, more than the ", optin, " this GPU gives a block");
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

}  // namespace fian_fast
