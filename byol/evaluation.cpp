#include "byol/evaluation.h"

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
#include "byol/optimizers.h"
#include "byol/schedules.h"
#include "data/loader.h"
#include "engine/autograd.h"
#include "engine/io/safetensors.h"
#include "kernels/math/optimizer_math.h"

namespace byol::eval {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void check_features(const Features& f, const char* what) {
  BYOL_CHECK(f.x.defined() && f.x.dim() == 2 && f.x.dtype() == DType::f32 && f.x.device().is_cpu(), what,
             ": features expected f32 [N, D] on the CPU, got ", f.x.defined() ? f.x.describe() : "none");
  BYOL_CHECK(f.labels.defined() && f.labels.dim() == 1 && f.labels.dtype() == DType::i64 &&
                 f.labels.size(0) == f.x.size(0),
             what, ": labels expected i64 [", f.x.size(0), "], got ",
             f.labels.defined() ? f.labels.describe() : "none");
}

// Every label in [0, classes) when classes > 0; returns 1 + the largest label.
int checked_classes(const Features& f, const char* what) {
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
Tensor normalized_rows(const Tensor& x) {
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

template <class T>
int64_t argmax_first(const T* scores, int64_t classes) {
  int64_t best = 0;
  for (int64_t c = 1; c < classes; ++c)
    if (scores[c] > scores[best]) best = c;
  return best;
}

void finish(ClassifyResult& r) {
  r.top1 = r.count ? double(r.correct1) / double(r.count) : 0.0;
  r.top5 = r.count ? double(r.correct5) / double(r.count) : 0.0;
}

std::shared_ptr<const data::Dataset> borrow(const data::Dataset& d) {
  return std::shared_ptr<const data::Dataset>(&d, [](const data::Dataset*) {});
}

// Rows `idx` of a features set.
Features gather(const Features& f, const std::vector<int64_t>& idx) {
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

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %%", 100.0 * fraction);
  return buf;
}

}  // namespace

// --- features --------------------------------------------------------------------------------------------

Features extract_features(const models::ResNet& encoder, const data::Dataset& dataset,
                          const data::AugmentOptions& transform, const ExtractOptions& options) {
  BYOL_CHECK(transform.views.size() == 1, "extract_features: the transform must produce one view, got ",
             transform.views.size());
  BYOL_CHECK(options.batch_size > 0, "extract_features: batch_size must be positive, got ",
             options.batch_size);
  const int64_t n = dataset.size(), d = encoder.out_features();
  BYOL_CHECK(n > 0, "extract_features: dataset ", dataset.describe(), " is empty");
  data::LoaderOptions lo;
  lo.batch_size = options.batch_size;
  lo.workers = options.workers;
  lo.seed = options.seed;
  lo.shuffle = false;
  lo.drop_last = false;
  // The loader is destroyed before this function returns, so it may borrow the caller's dataset.
  data::Loader loader(borrow(dataset), transform, lo);
  loader.start_epoch(options.epoch);

  Features f{Tensor::empty({n, d}), Tensor::empty({n}, DType::i64)};
  float* fx = f.x.data<float>();
  int64_t* fy = f.labels.data<int64_t>();
  NoGradGuard no_grad;
  const models::ForwardContext eval_mode{false, {}};
  int64_t done = 0, next_report = n / 10;
  const Device device = encoder.device();
  while (std::optional<data::Batch> b = loader.next()) {
    // An encoder on a GPU embeds there; its features come back to the host (features are host tensors).
    const Tensor y = encoder.forward(b->views[0].to(device), eval_mode).to(Device::cpu()).contiguous();
    const float* py = y.data<float>();
    const int64_t* labels = b->labels.defined() ? b->labels.data<int64_t>() : nullptr;
    for (int64_t r = 0; r < b->size(); ++r) {
      const int64_t i = b->indices[r];
      std::memcpy(fx + i * d, py + r * d, sizeof(float) * d);
      fy[i] = labels ? labels[r] : -1;
    }
    done += b->size();
    if (options.progress && done >= next_report && done < n) {
      options.progress(cat("features: ", done, " / ", n, " images"));
      next_report += n / 10;
    }
  }
  BYOL_CHECK(done == n, "extract_features: the loader delivered ", done, " of ", n, " images");
  return f;
}

Features extract_features(const models::ResNet& encoder, const data::Dataset& dataset,
                          const data::AugmentOptions& eval_transform, int64_t batch_size, int workers) {
  ExtractOptions o;
  o.batch_size = batch_size;
  o.workers = workers;
  return extract_features(encoder, dataset, eval_transform, o);
}

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

// --- linear evaluation ----------------------------------------------------------------------------------

Standardizer Standardizer::fit(const Tensor& x) {
  const Tensor c = x.contiguous();
  const int64_t n = c.size(0), d = c.size(1);
  BYOL_CHECK(n > 0, "Standardizer::fit: no rows");
  const float* p = c.data<float>();
  std::vector<double> sum(d, 0.0), sq(d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      sum[j] += p[i * d + j];
      sq[j] += double(p[i * d + j]) * p[i * d + j];
    }
  Standardizer s;
  s.mean.resize(d);
  s.inv_std.resize(d);
  for (int64_t j = 0; j < d; ++j) {
    const double mean = sum[j] / double(n), var = std::max(sq[j] / double(n) - mean * mean, 0.0);
    s.mean[j] = static_cast<float>(mean);
    s.inv_std[j] = static_cast<float>(1.0 / std::sqrt(var + 1e-5));
  }
  return s;
}

Tensor Standardizer::apply(const Tensor& x) const {
  const Tensor c = x.contiguous();
  const int64_t n = c.size(0), d = c.size(1);
  BYOL_CHECK(d == int64_t(mean.size()), "Standardizer: fitted on ", mean.size(), " features, applied to ",
             x.describe());
  Tensor out = Tensor::empty({n, d});
  const float* p = c.data<float>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) o[i * d + j] = (p[i * d + j] - mean[j]) * inv_std[j];
  return out;
}

ClassifyResult score_logits(const Tensor& logits, const Tensor& labels) {
  BYOL_CHECK(logits.dim() == 2 && logits.dtype() == DType::f32,
             "score_logits: logits expected f32 [N, C], got ", logits.describe());
  BYOL_CHECK(labels.dim() == 1 && labels.dtype() == DType::i64 && labels.size(0) == logits.size(0),
             "score_logits: labels expected i64 [", logits.size(0), "], got ", labels.describe());
  const Tensor l = logits.contiguous(), y = labels.contiguous();
  const int64_t n = l.size(0), c = l.size(1);
  const float* p = l.data<float>();
  const int64_t* py = y.data<int64_t>();
  ClassifyResult r;
  r.count = n;
  r.predictions.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    BYOL_CHECK(py[i] >= 0 && py[i] < c, "score_logits: label ", py[i], " of row ", i, " is outside [0, ", c,
               ")");
    const int64_t rank = label_rank(p + i * c, c, py[i]);
    r.correct1 += rank == 0;
    r.correct5 += rank < 5;
    r.predictions[i] = argmax_first(p + i * c, c);
  }
  finish(r);
  return r;
}

LinearHeads::LinearHeads(int64_t dim, int classes, int heads, const LinearEvalOptions& o)
    : dim_(dim), classes_(classes), heads_(heads), momentum_(o.momentum), weight_decay_(o.weight_decay) {
  BYOL_CHECK(dim > 0 && classes > 0 && heads > 0, "LinearHeads: expected positive sizes, got dim ", dim,
             ", classes ", classes, ", heads ", heads);
  std::mt19937_64 gen(data::mix_seed(o.seed, 0x6c696e656172ull));
  const double bound = 1.0 / std::sqrt(double(dim));
  const Tensor w0 = Tensor::uniform({classes, dim}, gen, -bound, bound);
  const Tensor b0 = Tensor::uniform({classes}, gen, -bound, bound);
  weight_ = Tensor::empty({int64_t(heads) * classes, dim});
  bias_ = Tensor::empty({int64_t(heads) * classes});
  for (int h = 0; h < heads; ++h) {
    weight(h).copy_(w0);
    bias(h).copy_(b0);
  }
  weight_m_ = Tensor::zeros(weight_.shape());
  bias_m_ = Tensor::zeros(bias_.shape());
  weight_grad_ = Tensor::empty(weight_.shape());
}

void LinearHeads::step(const Tensor& x, const Tensor& labels, const std::vector<double>& lrs) {
  BYOL_CHECK(x.dim() == 2 && x.size(1) == dim_ && x.dtype() == DType::f32 && x.is_contiguous(),
             "LinearHeads::step: x expected contiguous f32 [B, ", dim_, "], got ", x.describe());
  BYOL_CHECK(labels.dim() == 1 && labels.size(0) == x.size(0) && labels.dtype() == DType::i64,
             "LinearHeads::step: labels expected i64 [", x.size(0), "], got ", labels.describe());
  BYOL_CHECK(int(lrs.size()) == heads_, "LinearHeads::step: ", lrs.size(), " learning rates for ", heads_,
             " heads");
  const int64_t b = x.size(0), hc = int64_t(heads_) * classes_;
  Eigen::Map<const RowMatrix> X(x.data<float>(), b, dim_);
  Eigen::Map<RowMatrix> W(weight_.data<float>(), hc, dim_);
  if (!logits_.defined() || logits_.numel() != b * hc) logits_ = Tensor::empty({b, hc});
  Eigen::Map<RowMatrix> L(logits_.data<float>(), b, hc);
  L.noalias() = X * W.transpose();
  // L becomes the gradient of the mean loss with respect to the logits: (softmax - onehot) / B.
  const float* bias = bias_.data<float>();
  const int64_t* y = labels.data<int64_t>();
  for (int64_t r = 0; r < b; ++r) {
    BYOL_CHECK(y[r] >= 0 && y[r] < classes_, "LinearHeads::step: label ", y[r], " outside [0, ", classes_,
               ")");
    for (int h = 0; h < heads_; ++h) {
      float* z = L.data() + r * hc + int64_t(h) * classes_;
      const float* bh = bias + int64_t(h) * classes_;
      float top = -INFINITY;
      for (int c = 0; c < classes_; ++c) top = std::max(top, z[c] += bh[c]);
      double sum = 0;
      for (int c = 0; c < classes_; ++c) sum += std::exp(double(z[c] - top));
      for (int c = 0; c < classes_; ++c)
        z[c] = static_cast<float>((std::exp(double(z[c] - top)) / sum - (c == y[r] ? 1.0 : 0.0)) / double(b));
    }
  }
  Eigen::Map<RowMatrix> G(weight_grad_.data<float>(), hc, dim_);
  G.noalias() = L.transpose() * X;
  const Eigen::VectorXf bias_grad = L.colwise().sum().transpose();
  float* w = weight_.data<float>();
  float* wm = weight_m_.data<float>();
  float* bb = bias_.data<float>();
  float* bm = bias_m_.data<float>();
  const float* g = weight_grad_.data<float>();
  const float mom = float(momentum_), wd = float(weight_decay_);
  for (int h = 0; h < heads_; ++h) {
    const float lr = float(lrs[h]);
    for (int64_t j = int64_t(h) * classes_ * dim_; j < int64_t(h + 1) * classes_ * dim_; ++j)
      math::sgd_update(w[j], wm[j], g[j], wd, lr, mom, true);
    for (int64_t j = int64_t(h) * classes_; j < int64_t(h + 1) * classes_; ++j)
      math::sgd_update(bb[j], bm[j], bias_grad[j], wd, lr, mom, true);
  }
}

Tensor LinearHeads::logits(int head, const Tensor& x) const {
  BYOL_CHECK(head >= 0 && head < heads_, "LinearHeads::logits: head ", head, " of ", heads_);
  NoGradGuard no_grad;
  return ops::linear(x.contiguous(), weight(head), bias(head));
}

namespace {

// The linear heads' matrix products are small ([256, 512] x [512, 50]); split across OpenMP threads they
// spend more time in barriers than in arithmetic, and on a loaded machine a descheduled thread makes
// every barrier cost a scheduler slice (measured: 60k x 512, 10 epochs, 2 threads under load: 79 s;
// one thread: 4.2 s). So they run on the calling thread.
class SingleThreaded {
 public:
  SingleThreaded() : previous_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleThreaded() { omp_set_num_threads(previous_); }
  SingleThreaded(const SingleThreaded&) = delete;
  SingleThreaded& operator=(const SingleThreaded&) = delete;

 private:
  int previous_;
};

int64_t steps_per_epoch(int64_t n, int64_t batch) {
  return (n + batch - 1) / batch;
}

// One epoch of every head over the same seeded batch order (the last batch may be smaller). The lr of
// head h at global step k is lrs[h] * (1 + cos(pi k / K)) / 2.
void train_heads_epoch(LinearHeads& heads, const std::vector<double>& lrs, const Features& f, int64_t epoch,
                       int64_t total_steps, int64_t& step, const LinearEvalOptions& o) {
  const SingleThreaded single_threaded;
  const int64_t n = f.size(), d = f.x.size(1);
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 gen(data::mix_seed(data::mix_seed(o.seed, 0x6f72646572ull), uint64_t(epoch)));
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(order[i], order[std::min<int64_t>(i, int64_t(data::uniform01(gen) * double(i + 1)))]);
  const float* x = f.x.data<float>();
  const int64_t* y = f.labels.data<int64_t>();
  std::vector<double> step_lrs(lrs.size());
  for (int64_t start = 0; start < n; start += o.batch_size) {
    const int64_t rows = std::min(o.batch_size, n - start);
    Tensor xb = Tensor::empty({rows, d}), yb = Tensor::empty({rows}, DType::i64);
    float* px = xb.data<float>();
    int64_t* py = yb.data<int64_t>();
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(px + r * d, x + order[start + r] * d, sizeof(float) * d);
      py[r] = y[order[start + r]];
    }
    const double factor = learning_rate_at(step, total_steps, 0, 1.0);
    for (size_t h = 0; h < lrs.size(); ++h) step_lrs[h] = lrs[h] * factor;
    heads.step(xb, yb, step_lrs);
    ++step;
  }
}

void check_linear_options(const LinearEvalOptions& o) {
  BYOL_CHECK(!o.lr_grid.empty(), "linear evaluation: the lr grid is empty");
  for (double lr : o.lr_grid)
    BYOL_CHECK(lr > 0, "linear evaluation: learning rates must be positive, got ", lr);
  BYOL_CHECK(o.epochs >= 1, "linear evaluation: epochs must be at least 1, got ", o.epochs);
  BYOL_CHECK(o.batch_size >= 1, "linear evaluation: batch size must be positive, got ", o.batch_size);
  BYOL_CHECK(o.val_fraction > 0 && o.val_fraction < 1,
             "linear evaluation: the held-out fraction must be in (0, 1), got ", o.val_fraction);
}

// Picks the grid entry with the best held-out top-1 (ties: the smaller lr).
double best_of(const std::vector<LrTrial>& sweep) {
  const LrTrial* best = &sweep.front();
  for (const LrTrial& t : sweep)
    if (t.val_top1 > best->val_top1 || (t.val_top1 == best->val_top1 && t.lr < best->lr)) best = &t;
  return best->lr;
}

// Trains one head per lr for options.epochs, epoch e on the features epoch_features(e) standardised with
// the statistics of epoch 0's, and returns each head's logits on eval_features() (standardised alike).
std::vector<Tensor> train_and_score(const std::vector<double>& lrs, int classes,
                                    const std::function<Features(int64_t)>& epoch_features,
                                    const std::function<Tensor()>& eval_features, const LinearEvalOptions& o,
                                    const std::string& phase) {
  std::unique_ptr<LinearHeads> heads;
  Standardizer standardizer;
  Tensor raw, standardized;
  int64_t step = 0, total_steps = 0;
  for (int64_t e = 0; e < o.epochs; ++e) {
    Features f = epoch_features(e);
    if (e == 0) {
      standardizer = Standardizer::fit(f.x);
      total_steps = o.epochs * steps_per_epoch(f.size(), o.batch_size);
      heads = std::make_unique<LinearHeads>(f.x.size(1), classes, int(lrs.size()), o);
    }
    // Features mode hands over the same tensor every epoch: standardise it once.
    if (f.x.impl() != raw.impl()) {
      raw = f.x;
      standardized = standardizer.apply(f.x);
    }
    f.x = standardized;
    train_heads_epoch(*heads, lrs, f, e, total_steps, step, o);
    if (o.progress && (o.epochs <= 10 || (e + 1) % std::max(1, o.epochs / 10) == 0))
      o.progress(cat(phase, ": epoch ", e + 1, " / ", o.epochs));
  }
  const Tensor eval_x = standardizer.apply(eval_features());
  std::vector<Tensor> logits;
  for (int h = 0; h < heads->heads(); ++h) logits.push_back(heads->logits(h, eval_x));
  return logits;
}

LinearEvalResult run_linear_protocol(
    const std::function<Features(int64_t epoch, bool held_out)>& fit_features,
    const std::function<Features(bool held_out)>& eval_features, int classes, const LinearEvalOptions& o) {
  check_linear_options(o);
  LinearEvalResult result;
  if (o.lr_grid.size() == 1) {
    result.best_lr = o.lr_grid.front();
  } else {
    Features val;
    const std::vector<Tensor> logits = train_and_score(
        o.lr_grid, classes, [&](int64_t e) { return fit_features(e, true); },
        [&] {
          val = eval_features(true);
          return val.x;
        },
        o, "lr sweep");
    for (size_t h = 0; h < o.lr_grid.size(); ++h) {
      result.sweep.push_back({o.lr_grid[h], score_logits(logits[h], val.labels).top1});
      if (o.progress)
        o.progress(cat("lr ", o.lr_grid[h], ": held-out top-1 ", percent(result.sweep.back().val_top1)));
    }
    result.best_lr = best_of(result.sweep);
  }
  Features test;
  const std::vector<Tensor> logits = train_and_score(
      {result.best_lr}, classes, [&](int64_t e) { return fit_features(e, false); },
      [&] {
        test = eval_features(false);
        return test.x;
      },
      o, cat("final (lr ", result.best_lr, ")"));
  result.test = score_logits(logits.front(), test.labels);
  result.test_images = test.size();
  result.feature_dim = test.x.size(1);
  result.classes = classes;
  return result;
}

}  // namespace

Tensor train_linear_classifier(const Features& train, int classes, double lr,
                               const LinearEvalOptions& options, const Tensor& eval_x) {
  check_features(train, "train_linear_classifier");
  check_linear_options(options);
  BYOL_CHECK(checked_classes(train, "train_linear_classifier") <= classes,
             "train_linear_classifier: a label is >= classes ", classes);
  LinearHeads heads(train.x.size(1), classes, 1, options);
  const Features f{train.x.contiguous(), train.labels.contiguous()};
  int64_t step = 0;
  const int64_t total = options.epochs * steps_per_epoch(f.size(), options.batch_size);
  for (int64_t e = 0; e < options.epochs; ++e) train_heads_epoch(heads, {lr}, f, e, total, step, options);
  return heads.logits(0, eval_x);
}

LinearEvalResult linear_eval_features(const Features& train, const Features& test,
                                      const LinearEvalOptions& options) {
  check_features(train, "linear evaluation: training set");
  check_features(test, "linear evaluation: test set");
  BYOL_CHECK(train.x.size(1) == test.x.size(1), "linear evaluation: feature dimensions differ: training ",
             train.x.size(1), ", test ", test.x.size(1));
  const int classes = std::max(checked_classes(train, "linear evaluation: training set"),
                               checked_classes(test, "linear evaluation: test set"));
  const data::SplitIndices split = data::split_indices(train.size(), options.val_fraction, options.seed);
  BYOL_CHECK(options.lr_grid.size() == 1 || (!split.val.empty() && !split.train.empty()),
             "linear evaluation: ", train.size(), " training images are too few for a held-out split of ",
             options.val_fraction);
  const Features full{train.x.contiguous(), train.labels.contiguous()};
  Features fit, val;
  if (options.lr_grid.size() > 1) {
    fit = gather(full, split.train);
    val = gather(full, split.val);
  }
  LinearEvalResult r =
      run_linear_protocol([&](int64_t, bool held_out) { return held_out ? fit : full; },
                          [&](bool held_out) {
                            return held_out ? val : Features{test.x.contiguous(), test.labels.contiguous()};
                          },
                          classes, options);
  r.train_images = train.size();
  return r;
}

LinearEvalResult linear_eval_augmented(const models::ResNet& encoder,
                                       std::shared_ptr<const data::Dataset> train,
                                       std::shared_ptr<const data::Dataset> test,
                                       const data::AugmentOptions& train_transform,
                                       const data::AugmentOptions& test_transform,
                                       const LinearEvalOptions& options, const ExtractOptions& extract) {
  check_linear_options(options);
  BYOL_CHECK(train->has_labels() && test->has_labels(),
             "linear evaluation: ", train->has_labels() ? test->describe() : train->describe(),
             " has no labels");
  const int classes = std::max(train->num_classes(), test->num_classes());
  const data::SplitIndices split = data::split_indices(train->size(), options.val_fraction, options.seed);
  BYOL_CHECK(options.lr_grid.size() == 1 || (!split.val.empty() && !split.train.empty()),
             "linear evaluation: ", train->size(), " training images are too few for a held-out split of ",
             options.val_fraction);
  auto fit_set = std::make_shared<data::Subset>(train, split.train);
  auto val_set = std::make_shared<data::Subset>(train, split.val);
  ExtractOptions quiet = extract;
  quiet.progress = nullptr;
  LinearEvalResult r = run_linear_protocol(
      [&](int64_t epoch, bool held_out) {
        ExtractOptions e = quiet;
        e.epoch = epoch;
        e.seed = options.seed;
        return extract_features(encoder, held_out ? *fit_set : *train, train_transform, e);
      },
      [&](bool held_out) {
        return extract_features(encoder, held_out ? *val_set : *test, test_transform, extract);
      },
      classes, options);
  r.train_images = train->size();
  return r;
}

// --- fine-tuning
// --------------------------------------------------------------------------------------------

std::vector<int64_t> balanced_subset(const data::Dataset& dataset, double fraction, uint64_t seed) {
  BYOL_CHECK(dataset.has_labels(), "balanced_subset: ", dataset.describe(), " has no labels");
  BYOL_CHECK(fraction > 0 && fraction <= 1, "balanced_subset: fraction must be in (0, 1], got ", fraction);
  const int classes = dataset.num_classes();
  std::vector<std::vector<int64_t>> by_class(classes);
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const int64_t y = dataset.label(i);
    BYOL_CHECK(y >= 0 && y < classes, "balanced_subset: image ", i, " has label ", y, " outside [0, ",
               classes, ")");
    by_class[y].push_back(i);
  }
  const int64_t per_class =
      std::max<int64_t>(1, std::llround(fraction * double(dataset.size()) / double(classes)));
  std::vector<int64_t> out;
  for (int c = 0; c < classes; ++c) {
    std::vector<int64_t>& idx = by_class[c];
    BYOL_CHECK(int64_t(idx.size()) >= per_class, "balanced_subset: class ", c, " of ", dataset.describe(),
               " has ", idx.size(), " images, fewer than the ", per_class, " per class that fraction ",
               fraction, " asks for");
    std::mt19937_64 gen(data::mix_seed(data::mix_seed(seed, 0x62616c616e6365ull), uint64_t(c)));
    for (int64_t i = int64_t(idx.size()) - 1; i > 0; --i)
      std::swap(idx[i], idx[std::min<int64_t>(i, int64_t(data::uniform01(gen) * double(i + 1)))]);
    out.insert(out.end(), idx.begin(), idx.begin() + per_class);
  }
  std::sort(out.begin(), out.end());
  return out;
}

FinetuneResult finetune(const models::ResNet& encoder, const models::ParamRegistry& encoder_registry,
                        std::shared_ptr<const data::Dataset> train, std::shared_ptr<const data::Dataset> test,
                        const data::AugmentOptions& train_transform,
                        const data::AugmentOptions& test_transform, const FinetuneOptions& o,
                        const ExtractOptions& extract) {
  BYOL_CHECK(o.epochs >= 1 && o.batch_size >= 1 && o.lr > 0,
             "finetune: expected epochs >= 1, batch size >= 1 and lr > 0, got ", o.epochs, ", ", o.batch_size,
             ", ", o.lr);
  BYOL_CHECK(test->has_labels(), "finetune: ", test->describe(), " has no labels");
  const int classes = std::max(train->num_classes(), test->num_classes());
  auto subset = std::make_shared<data::Subset>(train, balanced_subset(*train, o.fraction, o.seed));

  // A trainable copy of the encoder and a new head in one registry (one optimizer over both).
  models::ParamRegistry reg;
  models::ResNet net(reg, "", encoder.config());
  models::Linear head(reg, "fc", net.out_features(), classes, true);
  reg.finalize(true);
  std::mt19937_64 gen(data::mix_seed(o.seed, 0x66696e65ull));
  reg.initialize(gen);  // the head's initialisation; the encoder's is overwritten next
  for (const models::ParamEntry& e : encoder_registry.param_entries()) reg.find(e.name).copy_(*e.slot);
  for (const models::StatEntry& e : encoder_registry.stat_entries()) reg.find(e.name).copy_(*e.slot);
  Sgd sgd(reg, SgdOptions{o.momentum, o.weight_decay, true});

  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.workers = extract.workers;
  lo.seed = o.seed;
  lo.shuffle = true;
  lo.drop_last =
      subset->size() > o.batch_size;  // no tiny last batch for batch norm, unless it is the only one
  data::Loader loader(subset, train_transform, lo);
  const int64_t total = o.epochs * loader.batches_per_epoch();
  const models::ForwardContext train_mode{true, {}};
  FinetuneResult r;
  for (int64_t e = 0; e < o.epochs; ++e) {
    loader.start_epoch(e);
    double loss_sum = 0;
    int64_t batches = 0;
    while (std::optional<data::Batch> b = loader.next()) {
      reg.grads().zero_();
      Tensor loss = ops::softmax_cross_entropy(head.forward(net.forward(b->views[0], train_mode)), b->labels);
      loss.backward();
      sgd.step(learning_rate_at(r.steps, total, 0, o.lr));
      loss_sum += loss.item();
      ++batches;
      ++r.steps;
    }
    r.epoch_loss.push_back(loss_sum / double(std::max<int64_t>(batches, 1)));
    if (o.progress)
      o.progress(cat("finetune: epoch ", e + 1, " / ", o.epochs, ", loss ", r.epoch_loss.back()));
  }
  const Features t = extract_features(net, *test, test_transform, extract);
  NoGradGuard no_grad;
  r.test = score_logits(head.forward(t.x), t.labels);
  r.train_images = subset->size();
  r.test_images = t.size();
  r.classes = classes;
  return r;
}

// --- loading an encoder
// ---------------------------------------------------------------------------------------

namespace {

constexpr const char* kCheckpointFormat = "byol.cpp checkpoint v1";

// The stored configuration, after checking the fields that were given against it (an empty block list
// means the depth's standard one).
models::ResNetConfig agreed_config(const std::string& path, const models::ResNetConfig& stored,
                                   const std::optional<models::ResNetConfig>& config,
                                   const EncoderSource::Given& given) {
  if (!config) return stored;
  std::string differ;
  const auto check = [&differ](bool on, const char* name, const auto& file, const auto& line) {
    if (on && file != line) differ += cat(differ.empty() ? "" : ", ", name, " ", file, " (given ", line, ")");
  };
  const auto stem_name = [](models::Stem s) {
    return std::string(s == models::Stem::cifar ? "cifar" : "imagenet");
  };
  models::ResNetConfig a = stored, b = *config;
  if (a.blocks.empty()) a.blocks = models::resnet_blocks(a.depth);
  if (b.blocks.empty()) b.blocks = models::resnet_blocks(b.depth);
  check(given.depth, "depth", a.depth, b.depth);
  // (blocks only when the given configuration lists them: no command-line flag does)
  if (given.depth && !config->blocks.empty() && a.blocks != b.blocks)
    differ += cat(differ.empty() ? "" : ", ", "blocks");
  check(given.width, "width", a.width, b.width);
  check(given.stem, "stem", stem_name(a.stem), stem_name(b.stem));
  check(given.base_channels, "base channels", a.base_channels, b.base_channels);
  BYOL_CHECK(differ.empty(), path, ": the file's encoder ", encoder_config_json(stored),
             " differs from the one given on the command line in ", differ);
  return stored;
}

// `file` (when not empty) claims to hold this encoder: it must have at least 4 bytes per parameter and
// statistic, which bounds what a small file with a huge encoder_config can make us allocate.
void build(LoadedEncoder& out, const models::ResNetConfig& cfg, const std::string& file = "") {
  if (!file.empty()) {
    const models::ResNetSize n = models::resnet_size(cfg);
    std::error_code ec;
    const uintmax_t bytes = std::filesystem::file_size(file, ec);
    BYOL_CHECK(!ec, file, ": cannot read its size: ", ec.message());
    BYOL_CHECK(uintmax_t(n.params + n.stats) * 4 <= bytes, file, ": its encoder configuration ",
               encoder_config_json(cfg), " has ", n.params, " parameters and ", n.stats,
               " statistics, more than the file's ", bytes, " bytes can hold");
  }
  out.registry = std::make_unique<models::ParamRegistry>();
  out.encoder = std::make_unique<models::ResNet>(*out.registry, "", cfg);
  out.registry->finalize(false);
}

}  // namespace

LoadedEncoder load_encoder(const EncoderSource& source) {
  LoadedEncoder out;
  out.path = source.path;
  if (source.path.empty()) {
    BYOL_CHECK(source.config.has_value(),
               "load_encoder: random initialisation needs an encoder configuration");
    build(out, *source.config);
    std::mt19937_64 gen(data::mix_seed(source.seed, 0x696e6974ull));
    out.registry->initialize(gen);
    out.kind = "random-init";
    return out;
  }
  const SafetensorsFile f = load_safetensors(source.path);
  if (f.has_metadata("format") && f.metadata_value("format") == kCheckpointFormat) {
    const nlohmann::json cfg = nlohmann::json::parse(f.metadata_value("config"), nullptr, false);
    BYOL_CHECK(!cfg.is_discarded() && cfg.contains("network"), source.path,
               ": metadata 'config' has no 'network' object");
    build(out,
          agreed_config(
              source.path,
              encoder_config_from_json(cfg["network"].dump(), source.path + ": metadata 'config' network"),
              source.config, source.given),
          source.path);
    for (const models::ParamEntry& e : out.registry->param_entries()) {
      f.copy_to("online/encoder." + e.name, *e.slot);
      ++out.loaded;
    }
    for (const models::StatEntry& e : out.registry->stat_entries()) {
      f.copy_to("online_stats/encoder." + e.name, *e.slot);
      ++out.loaded;
    }
    out.kind = "checkpoint";
    return out;
  }
  if (f.has_metadata("encoder_config")) {
    build(out,
          agreed_config(source.path,
                        encoder_config_from_json(f.metadata_value("encoder_config"),
                                                 source.path + ": metadata 'encoder_config'"),
                        source.config, source.given),
          source.path);
    out.kind = "exported";
  } else {
    BYOL_CHECK(
        f.contains("conv1.weight"), source.path,
        ": cannot tell what kind of encoder file this is: it is not a byol.cpp checkpoint (metadata "
        "'format'), has no 'encoder_config' metadata (an exported encoder) and no tensor 'conv1.weight' "
        "(a torchvision ResNet)");
    BYOL_CHECK(source.config.has_value(), source.path,
               ": a torchvision ResNet file does not say its shape; give the encoder configuration "
               "(--depth, --width, --stem, --base-channels)");
    build(out, *source.config);
    out.kind = "torchvision";
  }
  const ImportReport rep = import_encoder(source.path, *out.registry, "");
  out.loaded = rep.loaded;
  out.ignored = rep.ignored;
  return out;
}

}  // namespace byol::eval
