// Row-major products as column-major cuBLAS calls: a row-major [r, c] matrix is the column-major
// [c, r] matrix with the same bytes, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T.
#include "engine/cuda/blas.h"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <array>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/elementwise.cuh"

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
    set(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace_bytes);
  }
  ~LtPreference() { cublasLtMatmulPreferenceDestroy(d); }
  LtPreference(const LtPreference&) = delete;
  LtPreference& operator=(const LtPreference&) = delete;
  template <class V>
  void set(cublasLtMatmulPreferenceAttributes_t attr, const V& value) {
    BYOL_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d, attr, &value, sizeof(value)));
  }
};

constexpr size_t kLtWorkspace = size_t(32) << 20;

bool g_lt_disabled = [] {
  const char* v = std::getenv("BYOL_NO_CUBLASLT");
  return v != nullptr && *v != '\0' && *v != '0';
}();

// The heuristic's answer for one shape, TF32 setting, device and operand alignments (A = w, B = x,
// C = D = y, bias): an algorithm, or none (the fallback). Looked up before every call, so a later call
// with less-aligned operands never runs an algorithm chosen for more-aligned ones.
struct LtChoice {
  bool usable = false;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
};
using LtKey = std::array<int64_t, 10>;
std::mutex g_lt_mu;
std::map<LtKey, LtChoice> g_lt_choices;

// The cuBLASLt call with the bias epilogue; false where cuBLASLt has no algorithm for it.
bool linear_forward_lt(const float* x, const float* w, const float* b, float* y, int64_t N, int64_t in,
                       int64_t out) {
  // Column-major: y^T [out, N] = w_cm^T [out, in] x_cm [in, N], with w_cm = w's bytes as [in, out].
  LtMatmulDesc desc;
  desc.set(CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  desc.set(CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  if (b) {
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);  // adds b[row] to every column of D
    desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, b);
  }
  LtLayout la(in, out, in), lb(in, N, in), lc(out, N, out);
  const uint32_t align_a = pointer_alignment(w), align_b = pointer_alignment(x),
                 align_cd = pointer_alignment(y);
  const LtKey key{N,
                  in,
                  out,
                  b ? 1 : 0,
                  allow_tf32() ? 1 : 0,
                  current_device(),
                  align_a,
                  align_b,
                  align_cd,
                  b ? pointer_alignment(b) : 0};
  LtChoice choice;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(g_lt_mu);
    auto it = g_lt_choices.find(key);
    if (it != g_lt_choices.end()) choice = it->second, cached = true;
  }
  if (!cached) {
    LtPreference pref(kLtWorkspace);
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a);
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b);
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_cd);
    pref.set(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_cd);
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(cublaslt_handle(), desc.d, la.d, lb.d, lc.d,
                                                             lc.d, pref.d, 1, &heuristic, &found);
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) BYOL_CUBLAS_CHECK(st);
    choice.usable = st == CUBLAS_STATUS_SUCCESS && found > 0 && heuristic.state == CUBLAS_STATUS_SUCCESS;
    choice.algo = heuristic.algo;
    choice.workspace = heuristic.workspaceSize;
    std::lock_guard<std::mutex> lock(g_lt_mu);
    g_lt_choices[key] = choice;
  }
  if (!choice.usable) return false;
  const float one = 1.0f, zero = 0.0f;
  const cublasStatus_t st =
      cublasLtMatmul(cublaslt_handle(), desc.d, &one, w, la.d, x, lb.d, &zero, y, lc.d, y, lc.d, &choice.algo,
                     workspace(choice.workspace), choice.workspace, compute_stream());
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) {  // nothing was launched: remember, and take the fallback
    std::lock_guard<std::mutex> lock(g_lt_mu);
    g_lt_choices[key].usable = false;
    return false;
  }
  BYOL_CUBLAS_CHECK(st);
  return true;
}

}  // namespace

bool set_lt_disabled(bool disabled) {
  const bool previous = g_lt_disabled;
  g_lt_disabled = disabled;
  return previous;
}

bool lt_disabled() {
  return g_lt_disabled;
}

void gemm(const float* a, const float* b, float* c, int64_t M, int64_t K, int64_t N, bool trans_a,
          bool trans_b) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: zeros (cuBLAS rejects the leading dimensions of an empty operand)
    BYOL_CUDA_CHECK(cudaMemsetAsync(c, 0, static_cast<size_t>(M) * N * sizeof(float), compute_stream()));
    return;
  }
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
  const bool lt_ok = in > 0 && !lt_disabled() && (b == nullptr || pointer_alignment(b) >= kLtBiasAlignment);
  if (lt_ok && linear_forward_lt(x, w, b, y, N, in, out)) return;
  gemm(x, w, y, N, in, out, false, true);
  if (b) kernels::add_row_bias(y, b, N, out, compute_stream());
}

}  // namespace byol::cuda
