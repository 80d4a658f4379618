// One checking-macro family for CUDA runtime calls (cuDNN, cuBLAS and NCCL variants join it with the
// CUDA backend). A failed call throws byol::Error naming the statement, the error string, file and line.
#pragma once

#include <cuda_runtime.h>

#include "engine/common.h"

#define BYOL_CUDA_CHECK(stmt)                                                                \
  do {                                                                                       \
    cudaError_t byol_err_ = (stmt);                                                          \
    if (byol_err_ != cudaSuccess)                                                            \
      ::byol::throw_error(::byol::cat(#stmt, " failed: ", cudaGetErrorName(byol_err_), " (", \
                                      cudaGetErrorString(byol_err_), ")"),                   \
                          __FILE__, __LINE__);                                               \
  } while (0)
