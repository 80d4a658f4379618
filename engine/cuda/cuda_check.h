// One checking-macro family for CUDA runtime, cuDNN, cuBLAS / cuBLASLt and NCCL calls, and for kernel
// launches. A failed call throws byol::Error naming the statement, the library's error name and text,
// file and line:
//   BYOL_CUDA_CHECK(cudaMemcpyAsync(...));      BYOL_CUDNN_CHECK(cudnnConvolutionForward(...));
//   BYOL_CUBLAS_CHECK(cublasGemmEx(...));       BYOL_NCCL_CHECK(ncclAllReduce(...));
//   kernel<<<grid, block, 0, stream>>>(...); BYOL_CUDA_CHECK_LAUNCH();   // after every launch
// The library headers are included by the file that uses the macro; each macro only needs its own
// library's error-string function, so this header pulls in the CUDA runtime alone.
#pragma once

#include <cuda_runtime_api.h>

#include "engine/common.h"

namespace byol::cuda_detail {
[[noreturn]] inline void throw_call_error(const char* stmt, const char* library, const char* name,
                                          const char* text, const char* file, int line) {
  ::byol::throw_error(::byol::cat(stmt, " failed (", library, "): ", name, text[0] ? " - " : "", text), file,
                      line);
}
}  // namespace byol::cuda_detail

#define BYOL_CUDA_CHECK(stmt)                                                                   \
  do {                                                                                          \
    const cudaError_t byol_err_ = (stmt);                                                       \
    if (byol_err_ != cudaSuccess)                                                               \
      ::byol::cuda_detail::throw_call_error(#stmt, "CUDA", cudaGetErrorName(byol_err_),         \
                                            cudaGetErrorString(byol_err_), __FILE__, __LINE__); \
  } while (0)

// A launch reports configuration errors (too many threads, too much shared memory, no kernel image for
// this GPU) only through the last-error slot; check it right after the <<<>>>.
#define BYOL_CUDA_CHECK_LAUNCH() BYOL_CUDA_CHECK(cudaGetLastError())

#define BYOL_CUDNN_CHECK(stmt)                                                                           \
  do {                                                                                                   \
    const cudnnStatus_t byol_st_ = (stmt);                                                               \
    if (byol_st_ != CUDNN_STATUS_SUCCESS)                                                                \
      ::byol::cuda_detail::throw_call_error(#stmt, "cuDNN", cudnnGetErrorString(byol_st_), "", __FILE__, \
                                            __LINE__);                                                   \
  } while (0)

#define BYOL_CUBLAS_CHECK(stmt)                                                                   \
  do {                                                                                            \
    const cublasStatus_t byol_st_ = (stmt);                                                       \
    if (byol_st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      ::byol::cuda_detail::throw_call_error(#stmt, "cuBLAS", cublasGetStatusName(byol_st_),       \
                                            cublasGetStatusString(byol_st_), __FILE__, __LINE__); \
  } while (0)

#define BYOL_NCCL_CHECK(stmt)                                                               \
  do {                                                                                      \
    const ncclResult_t byol_st_ = (stmt);                                                   \
    if (byol_st_ != ncclSuccess)                                                            \
      ::byol::cuda_detail::throw_call_error(#stmt, "NCCL", ncclGetErrorString(byol_st_),    \
                                            ncclGetLastError(nullptr), __FILE__, __LINE__); \
  } while (0)
