// kNN evaluation and the collapse statistics (byol/evaluation.h).
#include <omp.h>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "byol/checkpoint.h"
#include "byol/eval_detail.h"
#include "byol/evaluation.h"
#include "byol/optimizers.h"
#include "byol/schedules.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "engine/math/optimizers.h"

namespace byol::eval {
using namespace detail;

// --- kNN ---------------------------------------------------------------------------------------------------

CollapseStats collapse_stats(const Tensor& x_in) {
  BYOL_CHECK(x_in.defined() && x_in.dim() == 2 && x_in.size(0) >= 2 && x_in.size(1) >= 1,
             "collapse_stats: expected features [N >= 2, D], got ",
             x_in.defined() ? x_in.describe() : "nothing");
  const Tensor x = x_in.to(Device::cpu()).contiguous();
  BYOL_CHECK(x.dtype() == DType::f32, "collapse_stats: expected f32 features, got ", x.describe());
  const int64_t n = x.size(0), d = x.size(1);
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Mat X = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
                    x.data<float>(), n, d)
                    .cast<double>();
  CollapseStats out;
  // Standard deviation over rows of the normalised rows, averaged over dimensions.
  Mat U = X;
  for (int64_t i = 0; i < n; ++i) {
    const double norm = U.row(i).norm();
    if (norm > 0) U.row(i) /= norm;
  }
  const Mat Uc = U.rowwise() - U.colwise().mean();
  out.normalized_std = (Uc.colwise().squaredNorm() / static_cast<double>(n - 1)).cwiseSqrt().mean();
  // Singular values of the centred X from the smaller Gram matrix's eigenvalues.
  const Mat Xc = X.rowwise() - X.colwise().mean();
  const Mat G = n < d ? Mat(Xc * Xc.transpose()) : Mat(Xc.transpose() * Xc);
  const Eigen::VectorXd ev = Eigen::SelfAdjointEigenSolver<Mat>(G, Eigen::EigenvaluesOnly).eigenvalues();
  const Eigen::VectorXd sv = ev.cwiseMax(0.0).cwiseSqrt();
  const double total = sv.sum();
  if (total <= 0) return {out.normalized_std, 1.0};
  double entropy = 0;
  for (Eigen::Index i = 0; i < sv.size(); ++i) {
    const double p = sv[i] / total;
    if (p > 0) entropy -= p * std::log(p);
  }
  out.effective_rank = std::exp(entropy);
  return out;
}

// [byol:knn]
ClassifyResult knn_classify(const Features& train, const Features& test, const KnnOptions& options) {
  check_features(train, "knn_classify: training set");
  check_features(test, "knn_classify: test set");
  BYOL_CHECK(train.x.size(1) == test.x.size(1), "knn_classify: feature dimensions differ: training ",
             train.x.size(1), ", test ", test.x.size(1));
  BYOL_CHECK(train.size() > 0, "knn_classify: the training set is empty");
  BYOL_CHECK(options.k >= 1, "knn_classify: k must be at least 1, got ", options.k);
  BYOL_CHECK(options.temperature > 0, "knn_classify: temperature must be positive, got ",
             options.temperature);
  BYOL_CHECK(options.chunk_rows >= 1, "knn_classify: chunk_rows must be positive, got ", options.chunk_rows);
  int classes = std::max(checked_classes(train, "knn_classify: training set"),
                         checked_classes(test, "knn_classify: test set"));
  if (options.num_classes > 0) {
    BYOL_CHECK(classes <= options.num_classes, "knn_classify: a label is >= num_classes ",
               options.num_classes);
    classes = options.num_classes;
  }
  const int64_t n = train.size(), m = test.size(), d = train.x.size(1);
  const int64_t k = std::min<int64_t>(options.k, n);
  const Tensor a = normalized_rows(train.x), b = normalized_rows(test.x);
  const Tensor train_y = train.labels.contiguous(), test_y = test.labels.contiguous();
  const int64_t* ty = train_y.data<int64_t>();
  const int64_t* qy = test_y.data<int64_t>();
  Eigen::Map<const RowMatrix> A(a.data<float>(), n, d);

  ClassifyResult r;
  r.count = m;
  r.predictions.resize(m);
  RowMatrix sims;
  int64_t correct1 = 0, correct5 = 0;
  for (int64_t start = 0; start < m; start += options.chunk_rows) {
    const int64_t rows = std::min(options.chunk_rows, m - start);
    Eigen::Map<const RowMatrix> B(b.data<float>() + start * d, rows, d);
    sims.resize(rows, n);
    sims.noalias() = B * A.transpose();
#pragma omp parallel reduction(+ : correct1, correct5)
    {
      // Neighbour order: higher similarity first, then lower training index. The heap's top is the worst
      // neighbour kept so far, so most candidates are rejected by one comparison.
      using Neighbour = std::pair<float, int64_t>;
      auto better = [](const Neighbour& x, const Neighbour& y) {
        return x.first > y.first || (x.first == y.first && x.second < y.second);
      };
      std::vector<Neighbour> heap;
      heap.reserve(k);
      std::vector<double> scores(classes);
#pragma omp for schedule(dynamic, 8)
      for (int64_t row = 0; row < rows; ++row) {
        const float* s = sims.data() + row * n;
        heap.clear();
        for (int64_t j = 0; j < n; ++j) {
          const Neighbour c{s[j], j};
          if (int64_t(heap.size()) < k) {
            heap.push_back(c);
            std::push_heap(heap.begin(), heap.end(), better);
          } else if (better(c, heap.front())) {
            std::pop_heap(heap.begin(), heap.end(), better);
            heap.back() = c;
            std::push_heap(heap.begin(), heap.end(), better);
          }
        }
        std::fill(scores.begin(), scores.end(), 0.0);
        for (const Neighbour& nb : heap)
          scores[ty[nb.second]] += std::exp(double(nb.first) / options.temperature);
        const int64_t label = qy[start + row];
        const int64_t rank = label_rank(scores.data(), classes, label);
        correct1 += rank == 0;
        correct5 += rank < 5;
        r.predictions[start + row] = argmax_first(scores.data(), classes);
      }
    }
  }
  r.correct1 = correct1;
  r.correct5 = correct5;
  finish(r);
  return r;
}

}  // namespace byol::eval
