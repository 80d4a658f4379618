// Dense products through cuBLAS / cuBLASLt (float32, row-major storage, on the compute stream). TF32
// follows cuda::allow_tf32(). Outputs are written (=).
#pragma once

#include <cstdint>

namespace byol::cuda {

// c[M, N] = op(a) op(b) with a stored [M, K] ([K, M] when trans_a) and b stored [K, N] ([N, K] when
// trans_b) — the CPU backend's matmul contract.
void gemm(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N, bool trans_a,
          bool trans_b);

// y[N, out] = x[N, in] w[out, in]^T + b (b may be null): one cuBLASLt call with the bias folded in as
// its epilogue; where cuBLASLt offers no algorithm for the shape, a plain GEMM and a bias kernel.
void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t N, int64_t in,
                    int64_t out);

}  // namespace byol::cuda
