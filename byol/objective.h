// The paper's unified objective (section 5, "relationship with SimCLR"): BYOL's regression loss and
// SimCLR's InfoNCE in one family, weighted by beta, with temperature alpha. docs/byol.md, section 8.
//
// With S(u, u') = cos(phi(u), psi(u')), phi the online predictions (or projections without a
// predictor) and psi the targets (the target network's projections, or the online projections without
// one), the paper writes for views v, v' of a batch of B images
//
//   InfoNCE_{alpha,beta} = 2/B sum_i S(v_i, v'_i)
//                        - beta 2 alpha/B sum_i ln( sum_{j != i} exp(S(v_i, v_j) / alpha)
//                                                 + sum_j      exp(S(v_i, v'_j) / alpha) )
//
// to be maximised. byol.cpp minimises, over both orders of the views as BYOL's loss does,
//
//   loss = (2 - InfoNCE_{alpha,beta}(v, v')) + (2 - InfoNCE_{alpha,beta}(v', v))
//        = (1 - beta) byol_loss + 4 beta + 2 alpha beta (CE_1 + CE_2),
//
// where CE_k is the mean softmax cross-entropy of the view-k predictions against all 2B candidates
// psi (the other view's B, the own view's B - 1: the own image's own view is left out) with the other
// view of the same image as the label. beta = 0 is BYOL's loss exactly (the same op, the same numbers);
// beta = 1 with neither predictor nor target network, and gradients through both sides, is SimCLR's
// NT-Xent (scaled by 4 alpha, plus 4).
//
// Across ranks the candidates are the whole global batch: each rank's targets are gathered
// (ops::all_gather_rows), and the gradient of a gathered row goes back to the rank that owns it.
#pragma once

#include "engine/ops.h"

namespace byol {

struct ObjectiveConfig {
  double beta = 0;           // weight of the InfoNCE term, in [0, 1]: 0 is BYOL, 1 the contrastive loss
  double temperature = 0.1;  // alpha, > 0
};

// Where the candidates of the InfoNCE term come from: one rank's rows, or every rank's through an
// in-place cross-rank sum (the communicator's all-reduce).
struct CandidateGather {
  int64_t rank = 0, world = 1;
  ops::StatsAllReduce sum;
};

class UnifiedObjective {
 public:
  explicit UnifiedObjective(ObjectiveConfig cfg = {});
  const ObjectiveConfig& config() const { return cfg_; }

  // The loss above for predictions p1, p2 and targets t1, t2 (all [N, D], this rank's N rows). Gradients
  // reach every input that requires one (the targets too, when they are not under stop-gradient).
  Tensor loss(const Tensor& p1, const Tensor& t2, const Tensor& p2, const Tensor& t1,
              const CandidateGather& gather = {});

  // CE_1 + CE_2 of the formula above (the InfoNCE term without its weight): a [] tensor.
  Tensor contrastive(const Tensor& p1, const Tensor& t2, const Tensor& p2, const Tensor& t1,
                     const CandidateGather& gather = {});

 private:
  ObjectiveConfig cfg_;
  // [N, 2 N_global] additive mask (-1e9 on the own image's own view) and [N] labels, kept across steps
  // for the shape, dtype and device they were made for.
  Tensor mask_, labels_;
};

}  // namespace byol
