// Helpers shared by the evaluation files (byol/features.cpp, knn.cpp, linear_eval.cpp, finetune.cpp):
// feature checks, row gathers, result bookkeeping. Internal to byol/.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "byol/evaluation.h"
#include "engine/math/cross_entropy.h"

namespace byol::eval::detail {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline void check_features(const Features& f, const char* what) {
  BYOL_CHECK(f.x.defined() && f.x.dim() == 2 && f.x.dtype() == DType::f32 && f.x.device().is_cpu(), what,
             ": features expected f32 [N, D] on the CPU, got ", f.x.defined() ? f.x.describe() : "none");
  BYOL_CHECK(f.labels.defined() && f.labels.dim() == 1 && f.labels.dtype() == DType::i64 &&
                 f.labels.size(0) == f.x.size(0),
             what, ": labels expected i64 [", f.x.size(0), "], got ",
             f.labels.defined() ? f.labels.describe() : "none");
}

// Every label in [0, classes) when classes > 0; returns 1 + the largest label.
inline int checked_classes(const Features& f, const char* what) {
  const int64_t* y = f.labels.contiguous().data<int64_t>();
  int64_t top = -1;
  for (int64_t i = 0; i < f.size(); ++i) {
    BYOL_CHECK(y[i] >= 0, what, ": image ", i, " has no label (", y[i],
               "); evaluation needs a labeled dataset");
    top = std::max(top, y[i]);
  }
  return static_cast<int>(top + 1);
}

// Rows scaled to unit L2 norm, x * rsqrt(max(sum x^2, 1e-12)) as ops::l2_normalize.
inline Tensor normalized_rows(const Tensor& x) {
  Tensor src = x.contiguous();
  Tensor out = Tensor::empty(src.shape());
  const int64_t n = src.size(0), d = src.size(1);
  const float* in = src.data<float>();
  float* o = out.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += double(in[i * d + j]) * in[i * d + j];
    const double inv = 1.0 / std::sqrt(std::max(ss, 1e-12));
    for (int64_t j = 0; j < d; ++j) o[i * d + j] = static_cast<float>(in[i * d + j] * inv);
  }
  return out;
}

// Rank of `label` among the scores: how many classes score higher, or equal with a lower index.
template <class T>
int64_t label_rank(const T* scores, int64_t classes, int64_t label) {
  int64_t rank = 0;
  for (int64_t c = 0; c < classes; ++c)
    if (scores[c] > scores[label] || (scores[c] == scores[label] && c < label)) ++rank;
  return rank;
}

// The predicted class: math::argmax_first (the first maximum, as std::max_element), shared with the engine.
using math::argmax_first;

inline void finish(ClassifyResult& r) {
  r.top1 = r.count ? double(r.correct1) / double(r.count) : 0.0;
  r.top5 = r.count ? double(r.correct5) / double(r.count) : 0.0;
}

inline std::shared_ptr<const data::Dataset> borrow(const data::Dataset& d) {
  return std::shared_ptr<const data::Dataset>(&d, [](const data::Dataset*) {});
}

// Rows `idx` of a features set.
inline Features gather(const Features& f, const std::vector<int64_t>& idx) {
  const int64_t d = f.x.size(1);
  Features out{Tensor::empty({int64_t(idx.size()), d}), Tensor::empty({int64_t(idx.size())}, DType::i64)};
  const float* x = f.x.data<float>();
  const int64_t* y = f.labels.data<int64_t>();
  float* ox = out.x.data<float>();
  int64_t* oy = out.labels.data<int64_t>();
  for (size_t r = 0; r < idx.size(); ++r) {
    std::memcpy(ox + r * d, x + idx[r] * d, sizeof(float) * d);
    oy[r] = y[idx[r]];
  }
  return out;
}

inline std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %%", 100.0 * fraction);
  return buf;
}

}  // namespace byol::eval::detail
