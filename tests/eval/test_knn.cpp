// kNN: against a brute-force double-precision implementation (full sort of every similarity), the
// weighted vote on hand-made examples, ties, k > n, chunking, and argument errors.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "eval_test_util.h"

using namespace byol;
using namespace byol::eval;
using byol::eval::testing::make_features;
using Catch::Matchers::Contains;

namespace {

struct BruteForce {
  std::vector<int64_t> predictions;
  int64_t correct1 = 0, correct5 = 0;
};

// Every similarity in double, neighbours by a full sort (similarity descending, index ascending),
// class scores sum exp(sim / T), classes ranked by a stable sort on score (so lower index wins ties).
BruteForce brute_force_knn(const Features& train, const Features& test, int k, double t, int classes) {
  const int64_t n = train.size(), m = test.size(), d = train.x.size(1);
  const std::vector<float> a = train.x.to_vector<float>(), b = test.x.to_vector<float>();
  const std::vector<int64_t> ya = train.labels.to_vector<int64_t>(), yb = test.labels.to_vector<int64_t>();
  auto norm = [&](const std::vector<float>& v, int64_t i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(v[i * d + j]) * v[i * d + j];
    return std::sqrt(s);
  };
  BruteForce r;
  for (int64_t q = 0; q < m; ++q) {
    std::vector<double> sim(n);
    for (int64_t i = 0; i < n; ++i) {
      double dot = 0;
      for (int64_t j = 0; j < d; ++j) dot += double(b[q * d + j]) * a[i * d + j];
      sim[i] = dot / (norm(b, q) * norm(a, i));
    }
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int64_t x, int64_t y) { return sim[x] > sim[y] || (sim[x] == sim[y] && x < y); });
    std::vector<double> score(classes, 0.0);
    for (int64_t i = 0; i < std::min<int64_t>(k, n); ++i) score[ya[order[i]]] += std::exp(sim[order[i]] / t);
    std::vector<int64_t> ranked(classes);
    std::iota(ranked.begin(), ranked.end(), 0);
    std::stable_sort(ranked.begin(), ranked.end(), [&](int64_t x, int64_t y) { return score[x] > score[y]; });
    r.predictions.push_back(ranked[0]);
    r.correct1 += ranked[0] == yb[q];
    for (int64_t i = 0; i < std::min<int64_t>(5, classes); ++i) r.correct5 += ranked[i] == yb[q];
  }
  return r;
}

// Gaussian clusters around one random centre per class, so the vote is informative but not perfect.
Features clustered(int64_t n, int64_t d, int classes, double noise, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal;
  std::mt19937_64 centre_gen(1234);
  std::vector<std::vector<float>> centres(classes, std::vector<float>(d));
  for (auto& c : centres)
    for (auto& v : c) v = float(normal(centre_gen));
  std::vector<std::vector<float>> rows;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) {
    const int c = int(gen() % classes);
    std::vector<float> r(d);
    for (int64_t j = 0; j < d; ++j) r[j] = centres[c][j] + float(noise * normal(gen));
    rows.push_back(r);
    labels.push_back(c);
  }
  return make_features(rows, labels);
}

}  // namespace

TEST_CASE("kNN matches a brute-force implementation", "[eval][knn]") {
  const int classes = 7;
  const Features train = clustered(300, 16, classes, 1.5, 1), test = clustered(120, 16, classes, 1.5, 2);
  for (int k : {1, 5, 20, 200, 1000}) {
    for (double t : {0.1, 0.5}) {
      KnnOptions o;
      o.k = k;
      o.temperature = t;
      o.chunk_rows = 37;  // several chunks, the last one partial
      const ClassifyResult r = knn_classify(train, test, o);
      const BruteForce e = brute_force_knn(train, test, k, t, classes);
      INFO("k = " << k << ", T = " << t);
      CHECK(r.predictions == e.predictions);
      CHECK(r.correct1 == e.correct1);
      CHECK(r.correct5 == e.correct5);
      CHECK(r.count == 120);
      CHECK(r.top1 == Approx(double(e.correct1) / 120));
      CHECK(r.top5 == Approx(double(e.correct5) / 120));
    }
  }
  // Informative but not trivial at these settings: the vote must beat chance clearly.
  const ClassifyResult r = knn_classify(train, test);
  CHECK(r.top1 > 0.5);
  CHECK(r.top1 < 1.0);
  CHECK(r.top5 >= r.top1);
}

TEST_CASE("kNN: the weighted vote lets one close neighbour outvote several far ones", "[eval][knn]") {
  // Query (1, 0). Class 1: one training vector along the query (cosine 1; its length 2 must not matter).
  // Class 0: three vectors at cosine 0.5. T = 0.1: e^10 = 22026 > 3 e^5 = 445, class 1 wins;
  // T = 1: e^1 = 2.72 < 3 e^0.5 = 4.95, class 0 wins (a majority vote would always say class 0).
  const float s = std::sqrt(0.75f);
  const Features train = make_features({{0.5f, s}, {2.0f, 0.0f}, {0.5f, -s}, {1.0f, 2 * s}}, {0, 1, 0, 0});
  const Features test = make_features({{1.0f, 0.0f}}, {1});
  KnnOptions o;
  o.k = 4;
  o.temperature = 0.1;
  CHECK(knn_classify(train, test, o).predictions == std::vector<int64_t>{1});
  CHECK(knn_classify(train, test, o).top1 == 1.0);
  o.temperature = 1.0;
  CHECK(knn_classify(train, test, o).predictions == std::vector<int64_t>{0});
  CHECK(knn_classify(train, test, o).top1 == 0.0);
  CHECK(knn_classify(train, test, o).top5 == 1.0);  // two classes: always in the top 5
  o.k = 1;                                          // only the nearest: class 1 at any temperature
  CHECK(knn_classify(train, test, o).predictions == std::vector<int64_t>{1});
}

TEST_CASE("kNN: ties go to the lower training index and the lower class; k > n takes everything",
          "[eval][knn]") {
  // Six identical training vectors (similarity exactly 1 to the query), labels 1 1 0 0 0 0, and one
  // orthogonal vector of class 2 (similarity exactly 0).
  const Features train = make_features(
      {{1, 0, 0}, {1, 0, 0}, {1, 0, 0}, {1, 0, 0}, {1, 0, 0}, {1, 0, 0}, {0, 1, 0}}, {1, 1, 0, 0, 0, 0, 2});
  const Features test = make_features({{3, 0, 0}}, {0});
  KnnOptions o;
  o.k = 2;  // the two lowest indices among the tied: both class 1
  CHECK(knn_classify(train, test, o).predictions == std::vector<int64_t>{1});
  o.k = 4;  // 1 1 0 0: equal scores, the lower class wins
  CHECK(knn_classify(train, test, o).predictions == std::vector<int64_t>{0});
  o.k = 3;  // 1 1 0: class 1
  CHECK(knn_classify(train, test, o).predictions == std::vector<int64_t>{1});
  o.k = 200;  // more than n = 7: all of them, 4 x class 0 beats 2 x class 1 and the far class 2
  const ClassifyResult all = knn_classify(train, test, o);
  CHECK(all.predictions == std::vector<int64_t>{0});
  CHECK(all.correct1 == 1);
  o.k = 7;
  CHECK(knn_classify(train, test, o).predictions == all.predictions);

  // Class-score tie with the label second: top-1 misses, top-5 hits.
  const Features pair = make_features({{1, 0}, {1, 0}}, {0, 1});
  const Features query = make_features({{1, 0}}, {1});
  const ClassifyResult r = knn_classify(pair, query);
  CHECK(r.predictions == std::vector<int64_t>{0});
  CHECK(r.correct1 == 0);
  CHECK(r.correct5 == 1);
}

TEST_CASE("kNN: num_classes widens the ranking; top-5 needs the label among the five best", "[eval][knn]") {
  // Ten classes, each with one training vector at a decreasing similarity to the query; the query's
  // label is the class ranked sixth, so top-5 misses; with k = 5 only five classes score at all.
  std::vector<std::vector<float>> rows;
  std::vector<int64_t> labels;
  for (int c = 0; c < 10; ++c) {
    const float angle = 0.1f * float(c);
    rows.push_back({std::cos(angle), std::sin(angle)});
    labels.push_back(9 - c);  // class 9 is nearest
  }
  const Features train = make_features(rows, labels);
  const Features sixth = make_features({{1, 0}}, {4}), fifth = make_features({{1, 0}}, {5});
  KnnOptions o;
  o.k = 10;
  CHECK(knn_classify(train, sixth, o).correct5 == 0);
  CHECK(knn_classify(train, fifth, o).correct5 == 1);
  CHECK(knn_classify(train, fifth, o).predictions == std::vector<int64_t>{9});
  o.num_classes = 12;
  CHECK(knn_classify(train, fifth, o).correct5 == 1);
  o.num_classes = 5;
  CHECK_THROWS_WITH(knn_classify(train, fifth, o), Contains("num_classes"));
}

TEST_CASE("kNN: argument errors", "[eval][knn]") {
  const Features a = make_features({{1, 0}, {0, 1}}, {0, 1});
  const Features wide = make_features({{1, 0, 0}}, {0});
  CHECK_THROWS_WITH(knn_classify(a, wide), Contains("feature dimensions differ"));
  const Features unlabeled = make_features({{1, 0}}, {-1});
  CHECK_THROWS_WITH(knn_classify(a, unlabeled), Contains("no label"));
  KnnOptions o;
  o.k = 0;
  CHECK_THROWS_WITH(knn_classify(a, a, o), Contains("k must be"));
  o.k = 1;
  o.temperature = 0;
  CHECK_THROWS_WITH(knn_classify(a, a, o), Contains("temperature"));
  Features bad = a;
  bad.labels = Tensor::zeros({3}, DType::i64);
  CHECK_THROWS_WITH(knn_classify(bad, a), Contains("labels expected"));
}

// Timing at the size of Fashion-MNIST / CIFAR (60k x 10k, 512-d): run explicitly with
//   byol_eval_tests "[.bench]"
TEST_CASE("kNN timing, 60k x 10k x 512", "[.bench]") {
  const Features train = clustered(60000, 512, 10, 3.0, 1), test = clustered(10000, 512, 10, 3.0, 2);
  const auto t0 = std::chrono::steady_clock::now();
  const ClassifyResult r = knn_classify(train, test);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("kNN 60000 x 10000 x 512, k 200: %.2f s, top-1 %.4f\n", s, r.top1);
  CHECK(r.count == 10000);
}
