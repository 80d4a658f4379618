// The linear protocol: standardised features, a sweep of linear heads, the final head (byol/evaluation.h).
#include <omp.h>

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
#include "engine/optim_ops.h"

namespace byol::eval {
using namespace detail;

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
  weight_m_ = Tensor::zeros(weight_.shape());
  bias_m_ = Tensor::zeros(bias_.shape());
  weight_grad_ = Tensor::zeros(weight_.shape());
  bias_grad_ = Tensor::zeros(bias_.shape());
  // Head h is a window of rows [h C, (h + 1) C) of each buffer: a leaf whose gradient lands in the same
  // rows of the gradient buffers, so each head's SGD step runs over contiguous slices.
  for (int h = 0; h < heads; ++h) {
    weight(h).copy_(w0);
    bias(h).copy_(b0);
    Tensor w = weight(h), b = bias(h);
    w.set_requires_grad(true).set_grad(rows(weight_grad_, h));
    b.set_requires_grad(true).set_grad(rows(bias_grad_, h));
    head_weight_.push_back(w);
    head_bias_.push_back(b);
  }
}

Tensor LinearHeads::rows(const Tensor& buffer, int head) const {
  return buffer.slice_rows(int64_t(head) * classes_, int64_t(head + 1) * classes_);
}

// One step of every head: the heads share nothing, so the backward of the sum of their losses gives each
// head the gradient of its own loss; then each takes PyTorch's SGD step (Nesterov) with its own lr.
void LinearHeads::step(const Tensor& x, const Tensor& labels, const std::vector<double>& lrs) {
  BYOL_CHECK(x.dim() == 2 && x.size(1) == dim_ && x.dtype() == DType::f32 && x.is_contiguous(),
             "LinearHeads::step: x expected contiguous f32 [B, ", dim_, "], got ", x.describe());
  BYOL_CHECK(labels.dim() == 1 && labels.size(0) == x.size(0) && labels.dtype() == DType::i64,
             "LinearHeads::step: labels expected i64 [", x.size(0), "], got ", labels.describe());
  BYOL_CHECK(int(lrs.size()) == heads_, "LinearHeads::step: ", lrs.size(), " learning rates for ", heads_,
             " heads");
  weight_grad_.zero_();
  bias_grad_.zero_();
  Tensor total;
  for (int h = 0; h < heads_; ++h) {
    const Tensor loss = ops::softmax_cross_entropy(ops::linear(x, head_weight_[h], head_bias_[h]), labels);
    total = h == 0 ? loss : ops::add(total, loss);
  }
  total.backward();
  for (int h = 0; h < heads_; ++h) {
    ops::sgd_step_(weight(h), rows(weight_m_, h), rows(weight_grad_, h), lrs[h], momentum_, weight_decay_,
                   /*nesterov=*/true);
    ops::sgd_step_(bias(h), rows(bias_m_, h), rows(bias_grad_, h), lrs[h], momentum_, weight_decay_,
                   /*nesterov=*/true);
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
// every barrier cost a scheduler slice (docs/benchmarks.md, "Linear heads on one thread"). So they run on
// the calling thread.
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
    const double factor = lr_at(step, total_steps, 0, 1.0);
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

}  // namespace byol::eval
