// Feature extraction (order, labels, evaluation-mode batch norm that leaves the statistics alone) and
// the balanced label fractions used by fine-tuning.
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <set>

#include "data/augment.h"
#include "eval_test_util.h"

using namespace byol;
using namespace byol::eval;
using Catch::Matchers::Contains;

namespace {

// One image through the transform by hand (sample_view + apply_view), as a [1, side, side, 3] tensor.
Tensor one_image(const data::Dataset& ds, int64_t i, const data::AugmentOptions& t) {
  std::vector<uint8_t> scratch;
  const data::ImageView img = ds.image(i, scratch);
  std::mt19937_64 gen(0);  // a centre crop draws nothing
  const data::AugmentParams p = data::sample_view(t.views[0], img.height, img.width, t.height, t.width, gen);
  Tensor out = Tensor::empty({1, t.height, t.width, 3});
  data::AugmentWorkspace ws;
  data::apply_view(img, p, t.height, t.width, t.normalization, out.data<float>(), ws);
  return out;
}

}  // namespace

TEST_CASE("extract_features: dataset order, labels, evaluation-mode batch norm", "[eval][features]") {
  models::ParamRegistry reg;
  models::ResNet net(reg, "", testing::tiny_encoder_config());
  reg.finalize(false);
  std::mt19937_64 gen(3);
  reg.initialize(gen);
  // Running statistics away from (0, 1), so that evaluation mode visibly differs from training mode.
  reg.stats().copy_(Tensor::uniform(reg.stats().shape(), gen, 0.5, 1.5));
  const std::vector<float> stats_before = reg.stats().to_vector<float>();
  const std::vector<float> params_before = reg.params().to_vector<float>();

  const data::SyntheticDataset ds(23, 4, 16, 7);
  const data::AugmentOptions t = data::AugmentOptions::eval(16, data::Normalization::cifar10(), 1.0);
  // Batch 5 does not divide 23: the last batch is partial and must still be kept.
  const Features f = extract_features(net, ds, t, 5, 2);
  REQUIRE(f.x.shape() == Shape{23, net.out_features()});
  REQUIRE(f.labels.shape() == Shape{23});
  const std::vector<int64_t> labels = f.labels.to_vector<int64_t>();
  for (int64_t i = 0; i < 23; ++i) CHECK(labels[i] == ds.label(i));

  // Each row is the image's own evaluation-mode forward pass, alone in its batch.
  const std::vector<float> x = f.x.to_vector<float>();
  const int64_t d = net.out_features();
  double max_diff = 0, max_train_mode_diff = 0;
  for (int64_t i = 0; i < 23; ++i) {
    const std::vector<float> expect = net.forward(one_image(ds, i, t), {false, {}}).to_vector<float>();
    for (int64_t j = 0; j < d; ++j) max_diff = std::max(max_diff, double(std::abs(x[i * d + j] - expect[j])));
  }
  CHECK(max_diff < 1e-4);
  // The statistics and parameters are untouched (a training-mode pass would update the statistics).
  CHECK(reg.stats().to_vector<float>() == stats_before);
  CHECK(reg.params().to_vector<float>() == params_before);
  // ... and training mode really does give other features and move the statistics (the check can fail).
  Tensor batch = ops::concat({one_image(ds, 0, t), one_image(ds, 1, t), one_image(ds, 2, t)});
  const std::vector<float> train_mode = net.forward(batch, {true, {}}).to_vector<float>();
  for (int64_t j = 0; j < d; ++j)
    max_train_mode_diff = std::max(max_train_mode_diff, double(std::abs(x[j] - train_mode[j])));
  CHECK(max_train_mode_diff > 1e-3);
  CHECK(reg.stats().to_vector<float>() != stats_before);

  // The same features whatever the batch size and worker count.
  ExtractOptions o;
  o.batch_size = 23;
  o.workers = 0;
  reg.stats().copy_(Tensor::from_vector(stats_before, reg.stats().shape()));
  const Features g = extract_features(net, ds, t, o);
  const std::vector<float> y = g.x.to_vector<float>();
  for (size_t i = 0; i < x.size(); ++i) REQUIRE(std::abs(x[i] - y[i]) < 1e-4);
}

TEST_CASE("extract_features: unlabeled data gives label -1; errors", "[eval][features]") {
  models::ParamRegistry reg;
  models::ResNet net(reg, "", testing::tiny_encoder_config());
  reg.finalize(false);
  std::mt19937_64 gen(3);
  reg.initialize(gen);
  std::vector<uint8_t> pixels(3 * 8 * 8 * 3, 100);
  const data::InMemoryDataset unlabeled("three grey images", pixels, 3, 8, 8, 3, {}, 0);
  const Features f =
      extract_features(net, unlabeled, data::AugmentOptions::eval(8, data::Normalization::none()), 2, 0);
  CHECK(f.labels.to_vector<int64_t>() == std::vector<int64_t>{-1, -1, -1});
  CHECK_THROWS_WITH(
      extract_features(net, unlabeled, data::AugmentOptions::byol(8, data::Normalization::none()), 2, 0),
      Contains("one view"));
  CHECK_THROWS_WITH(
      extract_features(net, unlabeled, data::AugmentOptions::eval(8, data::Normalization::none()), 0, 0),
      Contains("batch_size"));
}

TEST_CASE("balanced_subset: the same number per class, seeded, sorted, within each class",
          "[eval][finetune]") {
  // 1000 images whose labels are deliberately unbalanced: class c has 100 + 50 c images (4 classes).
  std::vector<int64_t> labels;
  for (int c = 0; c < 4; ++c)
    for (int i = 0; i < 100 + 50 * c; ++i) labels.push_back(c);
  std::shuffle(labels.begin(), labels.end(), std::mt19937_64(5));
  const int64_t n = int64_t(labels.size());  // 700
  std::vector<uint8_t> pixels(size_t(n) * 2 * 2, 0);
  const data::InMemoryDataset ds("unbalanced", pixels, n, 2, 2, 1, labels, 4);

  for (double fraction : {0.01, 0.1}) {
    const std::vector<int64_t> idx = balanced_subset(ds, fraction, 11);
    const int64_t per_class = std::max<int64_t>(1, std::llround(fraction * double(n) / 4));  // 2 and 18
    REQUIRE(int64_t(idx.size()) == 4 * per_class);
    std::map<int64_t, int64_t> count;
    for (int64_t i : idx) ++count[labels[i]];
    for (int c = 0; c < 4; ++c) CHECK(count[c] == per_class);
    CHECK(std::is_sorted(idx.begin(), idx.end()));
    CHECK(std::set<int64_t>(idx.begin(), idx.end()).size() == idx.size());
    CHECK(balanced_subset(ds, fraction, 11) == idx);  // seeded
    CHECK(balanced_subset(ds, fraction, 12) != idx);  // and the seed matters
  }
  // Every class can be exhausted: fraction 1 asks for 175 per class, class 0 has 100.
  CHECK_THROWS_WITH(balanced_subset(ds, 1.0, 0), Contains("class 0") && Contains("fewer"));
  CHECK_THROWS_WITH(balanced_subset(ds, 0.0, 0), Contains("fraction"));
  const data::InMemoryDataset unlabeled("u", std::vector<uint8_t>(4, 0), 1, 2, 2, 1, {}, 0);
  CHECK_THROWS_WITH(balanced_subset(unlabeled, 0.1, 0), Contains("no labels"));
}

TEST_CASE(
    "collapse_stats: 0 and rank 1 on a constant embedding, 1/sqrt(D) and near-full rank on random vectors",
    "[eval][collapse]") {
  const int64_t n = 4096, d = 64;
  std::mt19937_64 gen(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor constant = Tensor::empty({n, d}), random = Tensor::empty({n, d});
  std::vector<float> row(d);
  for (float& v : row) v = normal(gen);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < d; ++k) {
      constant.data<float>()[i * d + k] = row[k];
      random.data<float>()[i * d + k] = normal(gen);
    }
  const CollapseStats c = collapse_stats(constant);
  CHECK(c.normalized_std < 1e-6);
  CHECK(c.effective_rank == Approx(1.0));
  // Gaussian rows normalised are uniform on the sphere: each coordinate has variance 1/D, so its standard
  // deviation is 1/sqrt(D), up to sampling error of order 1/sqrt(N).
  const CollapseStats r = collapse_stats(random);
  CHECK(r.normalized_std == Approx(1.0 / std::sqrt(double(d))).epsilon(0.02));
  CHECK(r.effective_rank > 0.95 * d);
  // A half-collapsed embedding (every row's second half equal) lies in between.
  Tensor half = random.clone();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = d / 2; k < d; ++k) half.data<float>()[i * d + k] = row[k];
  const CollapseStats h = collapse_stats(half);
  CHECK(h.normalized_std < 0.8 * r.normalized_std);
  CHECK(h.effective_rank < 0.55 * d);
  CHECK_THROWS_WITH(collapse_stats(Tensor::empty({1, d})), Contains("expected features [N >= 2, D]"));
}

TEST_CASE("extract_features with bf16 products: each row the encoder's bf16 forward, close to fp32's",
          "[eval][features][bf16]") {
  models::ParamRegistry reg;
  models::ResNet net(reg, "", testing::tiny_encoder_config());
  reg.finalize(false);
  std::mt19937_64 gen(5);
  reg.initialize(gen);
  // Every parameter random (the zero-initialised residual scales too), so that features are not all zero.
  reg.params().copy_(Tensor::randn(reg.params().shape(), gen, DType::f32, 0.0, 0.5));
  const data::SyntheticDataset ds(12, 4, 16, 9);
  const data::AugmentOptions t = data::AugmentOptions::eval(16, data::Normalization::cifar10(), 1.0);
  ExtractOptions o;
  o.batch_size = 5;
  o.workers = 1;
  const Features f32 = extract_features(net, ds, t, o);
  o.bf16 = true;
  const Features b16 = extract_features(net, ds, t, o);
  const std::vector<float> a = f32.x.to_vector<float>(), b = b16.x.to_vector<float>();
  const int64_t d = net.out_features();
  double diff = 0, norm = 0, row_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(a[i]) * a[i];
  }
  // bf16 keeps 8 significant bits of each product's operands: the features move by about 2^-9 relative
  // per layer, far less than 5 %, and they do move (the option reached the convolutions).
  CHECK(std::sqrt(diff / norm) < 5e-2);
  CHECK(diff > 0);
  // Row i is image i's own bf16 forward pass.
  for (int64_t i = 0; i < 12; ++i) {
    const std::vector<float> expect =
        net.forward(one_image(ds, i, t), {false, {}, 1, /*bf16=*/true}).to_vector<float>();
    for (int64_t j = 0; j < d; ++j) row_diff = std::max(row_diff, std::abs(double(expect[j]) - b[i * d + j]));
  }
  CHECK(row_diff < 1e-5);
}
