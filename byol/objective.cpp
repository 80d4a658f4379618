#include "byol/objective.h"

#include <cmath>

namespace byol {

UnifiedObjective::UnifiedObjective(ObjectiveConfig cfg) : cfg_(cfg) {
  BYOL_CHECK(std::isfinite(cfg.beta) && cfg.beta >= 0 && cfg.beta <= 1,
             "unified objective: beta must be in [0, 1], got ", cfg.beta);
  BYOL_CHECK(std::isfinite(cfg.temperature) && cfg.temperature > 0,
             "unified objective: the temperature (alpha) must be positive, got ", cfg.temperature);
}

// [byol:infonce]
Tensor UnifiedObjective::contrastive(const Tensor& p1, const Tensor& t2, const Tensor& p2, const Tensor& t1,
                                     const CandidateGather& gather) {
  for (const Tensor* t : {&t2, &p2, &t1})
    BYOL_CHECK(t->defined() && p1.defined() && t->shape() == p1.shape() && p1.dim() == 2,
               "unified objective: predictions and targets must all be [N, D] of one shape, got ",
               p1.defined() ? p1.describe() : std::string("undefined"), " and ",
               t->defined() ? t->describe() : std::string("undefined"));
  const int64_t n = p1.size(0), n_global = n * gather.world;
  // Unit vectors: every logit is a cosine over the temperature.
  const Tensor u1 = ops::l2_normalize(p1), u2 = ops::l2_normalize(p2);
  const Tensor c1 = ops::all_gather_rows(ops::l2_normalize(t1), gather.rank, gather.world, gather.sum);
  const Tensor c2 = ops::all_gather_rows(ops::l2_normalize(t2), gather.rank, gather.world, gather.sum);

  // Global row g = rank * n + i. Candidates of view k's predictions: [other view (n_global); own view
  // (n_global)]; the label is the other view of the same image (column g), the own view of the same
  // image (column n_global + g) is masked out.
  if (!mask_.defined() || mask_.shape() != Shape{n, 2 * n_global} || mask_.dtype() != p1.dtype() ||
      mask_.device() != p1.device()) {
    std::vector<double> mask(static_cast<size_t>(n * 2 * n_global), 0.0);
    std::vector<int64_t> labels(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t g = gather.rank * n + i;
      labels[i] = g;
      mask[i * 2 * n_global + n_global + g] = -1e9;  // exp(-1e9 + cos / alpha) is 0 in any precision
    }
    mask_ = Tensor::from_vector(mask, {n, 2 * n_global}).to(p1.dtype()).to(p1.device());
    labels_ = Tensor::from_vector(labels, {n}).to(p1.device());
  }
  const double inv_t = 1.0 / cfg_.temperature;
  const Tensor logits1 = ops::add(ops::scale(ops::linear(u1, ops::concat({c2, c1})), inv_t), mask_);
  const Tensor logits2 = ops::add(ops::scale(ops::linear(u2, ops::concat({c1, c2})), inv_t), mask_);
  return ops::add(ops::softmax_cross_entropy(logits1, labels_), ops::softmax_cross_entropy(logits2, labels_));
}

// [byol:unified-loss]
Tensor UnifiedObjective::loss(const Tensor& p1, const Tensor& t2, const Tensor& p2, const Tensor& t1,
                              const CandidateGather& gather) {
  const double beta = cfg_.beta, alpha = cfg_.temperature;
  if (beta == 0) return ops::byol_loss(p1, t2, p2, t1);
  Tensor loss = ops::scale(contrastive(p1, t2, p2, t1, gather), 2 * alpha * beta);
  loss = ops::add(loss, Tensor::full({}, 4 * beta, loss.dtype(), loss.device()));
  if (beta < 1) loss = ops::add(loss, ops::scale(ops::byol_loss(p1, t2, p2, t1), 1 - beta));
  return loss;
}

}  // namespace byol
