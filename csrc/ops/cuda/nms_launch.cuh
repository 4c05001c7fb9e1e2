// Launch helpers of the block-NMS kernels: dynamic shared memory beyond the 48 KiB default.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime.h>

namespace fian_fast {

// Raises the kernel's dynamic shared-memory limit to `bytes` when its current one (by default
// 48 KiB less the kernel's static shared variables) is lower, after checking that the static
// and dynamic parts together fit what the current device gives one block.
template <typename Kernel>
inline void reserve_shared(Kernel kernel, size_t bytes, const char* op, int64_t n) {
  int device = c10::cuda::current_device();
  int optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cudaFuncAttributes attr;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  TORCH_CHECK(bytes + attr.sharedSizeBytes <= static_cast<size_t>(optin), op, ": ", n,
              " candidates per sample need ", bytes + attr.sharedSizeBytes,
              " bytes of shared memory, more than the ", optin, " this GPU gives a block");
  if (bytes > static_cast<size_t>(attr.maxDynamicSharedSizeBytes)) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  }
}

}  // namespace fian_fast
