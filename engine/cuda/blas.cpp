// Row-major products as column-major cuBLAS calls: a row-major [r, c] matrix is the column-major
// [c, r] matrix with the same bytes, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T.
#include "engine/cuda/blas.h"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <limits>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "kernels/elementwise.cuh"

namespace byol::cuda {
namespace {

int to_int(int64_t v, const char* what) {
  BYOL_CHECK(v <= std::numeric_limits<int>::max(), "cuBLAS: ", what, " = ", v, " exceeds the 32-bit limit");
  return static_cast<int>(v);
}

cublasComputeType_t compute_type() {
  return allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

// RAII for the cuBLASLt descriptors of one call.
struct LtMatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  LtMatmulDesc() { BYOL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d, compute_type(), CUDA_R_32F)); }
  ~LtMatmulDesc() { cublasLtMatmulDescDestroy(d); }
  LtMatmulDesc(const LtMatmulDesc&) = delete;
  LtMatmulDesc& operator=(const LtMatmulDesc&) = delete;
  template <class V>
  void set(cublasLtMatmulDescAttributes_t attr, const V& value) {
    BYOL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof(value)));
  }
};

struct LtLayout {
  cublasLtMatrixLayout_t d = nullptr;
  LtLayout(int64_t rows, int64_t cols, int64_t ld) {
    BYOL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d, CUDA_R_32F, static_cast<uint64_t>(rows),
                                                 static_cast<uint64_t>(cols), ld));
  }
  ~LtLayout() { cublasLtMatrixLayoutDestroy(d); }
  LtLayout(const LtLayout&) = delete;
  LtLayout& operator=(const LtLayout&) = delete;
};

struct LtPreference {
  cublasLtMatmulPreference_t d = nullptr;
  explicit LtPreference(size_t workspace_bytes) {
    BYOL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d));
    BYOL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &workspace_bytes, sizeof(workspace_bytes)));
  }
  ~LtPreference() { cublasLtMatmulPreferenceDestroy(d); }
  LtPreference(const LtPreference&) = delete;
  LtPreference& operator=(const LtPreference&) = delete;
};

constexpr size_t kLtWorkspace = size_t(32) << 20;

}  // namespace

void gemm(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N, bool trans_a,
          bool trans_b) {
  if (M == 0 || N == 0) return;
  const float one = 1.0f, zero = 0.0f;
  BYOL_CUBLAS_CHECK(cublasGemmEx(cublas_handle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, to_int(N, "N"), to_int(M, "M"),
                                 to_int(K, "K"), &one, b, CUDA_R_32F, to_int(trans_b ? K : N, "ldb"), a,
                                 CUDA_R_32F, to_int(trans_a ? M : K, "lda"), &zero, c, CUDA_R_32F,
                                 to_int(N, "ldc"), compute_type(), CUBLAS_GEMM_DEFAULT));
}

void linear_forward(const float* x, const float* w, const float* b, float* y, int64_t N, int64_t in,
                    int64_t out) {
  if (N == 0 || out == 0) return;
  // Column-major: y^T [out, N] = w_cm^T [out, in] x_cm [in, N], with w_cm = w's bytes as [in, out].
  LtMatmulDesc desc;
  desc.set(CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  desc.set(CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  if (b) {
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);  // adds b[row] to every column of D
    desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, b);
  }
  LtLayout la(in, out, in), lb(in, N, in), lc(out, N, out);
  LtPreference pref(kLtWorkspace);
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  BYOL_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(cublaslt_handle(), desc.d, la.d, lb.d, lc.d, lc.d, pref.d,
                                                   1, &heuristic, &found));
  if (found > 0) {
    const float one = 1.0f, zero = 0.0f;
    BYOL_CUBLAS_CHECK(cublasLtMatmul(cublaslt_handle(), desc.d, &one, w, la.d, x, lb.d, &zero, y, lc.d, y,
                                     lc.d, &heuristic.algo, workspace(heuristic.workspaceSize),
                                     heuristic.workspaceSize, compute_stream()));
    return;
  }
  gemm(x, w, y, N, in, out, false, true);
  if (b) kernels::add_row_bias(y, b, N, out, compute_stream());
}

}  // namespace byol::cuda
