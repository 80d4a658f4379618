// Host-side choice of cuDNN convolution algorithms, free of cuDNN types so the CPU tests exercise it
// (tests/test_cuda_backend.cpp). conv_cudnn.cpp converts each cudnnFind*AlgorithmEx result into a
// ConvAlgoResult, keeps the usable ones fastest first, and runs them through run_first_working: an
// algorithm that fails when executed (cuDNN can time one on the Find's buffers and then refuse it for
// other pointers, alignments or a workspace it cannot get) hands over to the next, as PyTorch does.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "engine/common.h"

namespace byol::cuda {

struct ConvAlgoResult {
  int algo = 0;       // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
  bool ok = false;    // status == CUDNN_STATUS_SUCCESS
  size_t memory = 0;  // workspace bytes
  int math = 0;       // cudnnMathType_t it was timed with
};

// The results worth running, in the order given (cuDNN sorts them by time): those that succeeded, fit the
// workspace limit and, with TF32 off, ran with FMA math (fma_math = CUDNN_FMA_MATH) — CUDNN_DEFAULT_MATH
// and the tensor-op types may use TF32 tensor cores for float32 data on Ampere and later.
inline std::vector<ConvAlgoResult> usable_conv_algorithms(const std::vector<ConvAlgoResult>& found,
                                                          size_t workspace_limit, bool tf32, int fma_math) {
  std::vector<ConvAlgoResult> out;
  for (const ConvAlgoResult& r : found) {
    if (!r.ok || r.memory > workspace_limit) continue;
    if (!tf32 && r.math != fma_math) continue;
    out.push_back(r);
  }
  return out;
}

// Runs run(candidates[i]) for i = next, next + 1, ... until one returns true (it ran), and leaves `next` at
// that candidate so later calls start there. run returns false for an execution failure (the next one is
// tried; its reason goes into the error) and throws for anything else. When all fail it throws, naming
// `what` and every reason.
template <class Run>
void run_first_working(const std::vector<ConvAlgoResult>& candidates, size_t& next, const std::string& what,
                       Run&& run) {
  std::string reasons;
  for (; next < candidates.size(); ++next) {
    std::string reason;
    if (run(candidates[next], reason)) return;
    reasons += cat(reasons.empty() ? "" : "; ", "algorithm ", candidates[next].algo, ": ", reason);
  }
  BYOL_FAIL(what, ": every algorithm cuDNN found failed to run (",
            reasons.empty() ? "none was usable" : reasons, ")");
}

}  // namespace byol::cuda
