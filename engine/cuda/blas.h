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
// its epilogue, its algorithm chosen for the operands' actual alignment (pointer_alignment) and cached
// per shape, TF32 setting, device and alignments. Where cuBLASLt offers no algorithm (the heuristic finds
// none or answers NOT_SUPPORTED, or the matmul itself answers NOT_SUPPORTED), where the bias is less
// than kLtBiasAlignment-aligned, or where the Lt path is switched off: a plain GEMM and a bias kernel.
void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t N, int64_t in,
                    int64_t out);

// The alignment cuBLASLt is told an operand has (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES), and the
// alignment class cuDNN plans are keyed by: the largest power of two dividing the address, at most 256
// (cuBLASLt's default assumption, which the flat buffers' 64-byte-aligned windows and row slices of
// activations do not meet).
inline uint32_t pointer_alignment(const void* p) {
  const uint64_t addr = reinterpret_cast<uint64_t>(p);
  if (addr == 0) return 256;
  const uint64_t lowest = addr & (~addr + 1);  // the lowest set bit
  return lowest >= 256 ? 256u : static_cast<uint32_t>(lowest);
}
// The bias epilogue's vector has no alignment preference in cuBLASLt; below this it takes the fallback.
constexpr uint32_t kLtBiasAlignment = 16;

// Switches the cuBLASLt path of linear_forward off (true) or back on, so tests can run the fallback;
// BYOL_NO_CUBLASLT=1 in the environment switches it off from the start. Returns the previous setting.
bool set_lt_disabled(bool disabled);
bool lt_disabled();

}  // namespace byol::cuda
