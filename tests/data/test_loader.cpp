// The loader: shapes, epoch order and shuffling, sharding, drop-last, determinism across worker
// counts, buffer reuse, restarts, and that each row is exactly its image's augmented views.
#include <catch2/catch.hpp>

#include <cstring>
#include <set>

#include "data/loader.h"

using namespace byol;
using namespace byol::data;

namespace {

std::shared_ptr<Dataset> synthetic(int64_t n, int classes = 5, int side = 12) {
  return std::make_shared<SyntheticDataset>(n, classes, side, 11);
}

// Every batch of one epoch, cloned out of the loader's buffers.
struct Collected {
  std::vector<std::vector<float>> view0, view1;
  std::vector<std::vector<int64_t>> labels, indices;
};

Collected collect(Loader& loader, int64_t epoch) {
  Collected c;
  loader.start_epoch(epoch);
  while (std::optional<Batch> b = loader.next()) {
    c.view0.push_back(b->views[0].to_vector<float>());
    c.view1.push_back(b->views.size() > 1 ? b->views[1].to_vector<float>() : std::vector<float>{});
    c.labels.push_back(b->labels.defined() ? b->labels.to_vector<int64_t>() : std::vector<int64_t>{});
    c.indices.push_back(b->indices);
  }
  return c;
}

}  // namespace

TEST_CASE("batches are NHWC f32 views plus i64 labels; drop_last decides the partial batch", "[loader]") {
  auto ds = synthetic(23);
  const AugmentOptions aug = AugmentOptions::byol(10, Normalization::imagenet());
  Loader loader(ds, aug, {.batch_size = 5, .workers = 2});
  CHECK(loader.samples_per_epoch() == 23);
  CHECK(loader.batches_per_epoch() == 4);
  loader.start_epoch(0);
  int n = 0;
  while (auto b = loader.next()) {
    ++n;
    REQUIRE(b->views.size() == 2);
    for (const Tensor& v : b->views) {
      CHECK(v.shape() == Shape{5, 10, 10, 3});
      CHECK(v.dtype() == DType::f32);
    }
    CHECK(b->labels.shape() == Shape{5});
    CHECK(b->labels.dtype() == DType::i64);
    const auto labels = b->labels.to_vector<int64_t>();
    for (int i = 0; i < 5; ++i) CHECK(labels[i] == ds->label(b->indices[i]));
  }
  CHECK(n == 4);
  CHECK(!loader.next().has_value());  // stays at the end

  Loader keep(ds, aug, {.batch_size = 5, .workers = 1, .drop_last = false});
  CHECK(keep.batches_per_epoch() == 5);
  const Collected c = collect(keep, 0);
  REQUIRE(c.indices.size() == 5);
  CHECK(c.indices.back().size() == 3);
  CHECK(c.view0.back().size() == size_t(3 * 10 * 10 * 3));
  std::set<int64_t> seen;
  for (const auto& b : c.indices) seen.insert(b.begin(), b.end());
  CHECK(seen.size() == 23);  // every image once
}

TEST_CASE("each epoch is a different seeded permutation; no shuffle keeps dataset order", "[loader]") {
  auto ds = synthetic(40);
  const AugmentOptions aug = AugmentOptions::eval(8, Normalization::none(), 1.0);
  Loader loader(ds, aug, {.batch_size = 8, .workers = 2, .seed = 3});
  const std::vector<int64_t> e0 = loader.epoch_order(0), e1 = loader.epoch_order(1);
  CHECK(e0 != e1);
  CHECK(std::set<int64_t>(e0.begin(), e0.end()).size() == 40);
  Loader same_seed(ds, aug, {.batch_size = 8, .workers = 0, .seed = 3});
  CHECK(same_seed.epoch_order(1) == e1);
  Loader other_seed(ds, aug, {.batch_size = 8, .workers = 0, .seed = 4});
  CHECK(other_seed.epoch_order(1) != e1);
  Loader ordered(ds, aug, {.batch_size = 8, .workers = 2, .shuffle = false});
  const Collected c = collect(ordered, 5);
  for (size_t b = 0; b < c.indices.size(); ++b)
    for (size_t i = 0; i < c.indices[b].size(); ++i) CHECK(c.indices[b][i] == int64_t(b * 8 + i));
  const Collected shuffled = collect(loader, 1);
  std::vector<int64_t> flat;
  for (const auto& b : shuffled.indices) flat.insert(flat.end(), b.begin(), b.end());
  CHECK(flat == e1);
}

TEST_CASE("ranks see disjoint, equal parts of each epoch", "[loader]") {
  auto ds = synthetic(50);
  const AugmentOptions aug = AugmentOptions::eval(8, Normalization::none(), 1.0);
  std::set<int64_t> all;
  size_t total = 0;
  for (int rank = 0; rank < 3; ++rank) {
    Loader loader(ds, aug, {.batch_size = 4, .workers = 1, .seed = 9, .rank = rank, .world_size = 3});
    CHECK(loader.samples_per_epoch() == 16);
    CHECK(loader.batches_per_epoch() == 4);  // 16 / 4, drop_last
    const Collected c = collect(loader, 2);
    for (const auto& b : c.indices) {
      total += b.size();
      all.insert(b.begin(), b.end());
    }
  }
  CHECK(total == 48);
  CHECK(all.size() == 48);  // disjoint
}

TEST_CASE("batches are bit-identical for a seed whatever the worker count and chunking", "[loader]") {
  auto ds = synthetic(30, 4, 20);
  const AugmentOptions aug = AugmentOptions::byol(16, Normalization::imagenet());
  Loader a(ds, aug, {.batch_size = 6, .workers = 0, .seed = 5});
  Loader b(ds, aug, {.batch_size = 6, .workers = 3, .prefetch = 3, .seed = 5, .chunk = 1});
  Loader c(ds, aug, {.batch_size = 6, .workers = 2, .prefetch = 1, .seed = 5, .chunk = 4});
  const Collected ca = collect(a, 1), cb = collect(b, 1), cc = collect(c, 1);
  CHECK(ca.indices == cb.indices);
  CHECK(ca.view0 == cb.view0);
  CHECK(ca.view1 == cb.view1);
  CHECK(ca.labels == cb.labels);
  CHECK(ca.view0 == cc.view0);
  CHECK(ca.view1 == cc.view1);
  Loader d(ds, aug, {.batch_size = 6, .workers = 2, .seed = 6});
  CHECK(collect(d, 1).view0 != ca.view0);
  CHECK(collect(a, 2).view0 != ca.view0);  // a new epoch, new views
}

TEST_CASE("each row holds its image's views from image_generator(seed, epoch, index)", "[loader]") {
  auto ds = synthetic(9, 3, 14);
  const AugmentOptions aug = AugmentOptions::byol(10, Normalization::cifar10());
  Loader loader(ds, aug, {.batch_size = 4, .workers = 2, .seed = 77});
  loader.start_epoch(4);
  auto b = loader.next();
  REQUIRE(b);
  AugmentWorkspace ws;
  std::vector<uint8_t> scratch;
  std::vector<float> want(10 * 10 * 3);
  for (int i = 0; i < 4; ++i) {
    const ImageView img = ds->image(b->indices[i], scratch);
    std::mt19937_64 gen = image_generator(77, 4, b->indices[i]);
    for (int v = 0; v < 2; ++v) {
      const AugmentParams p = sample_view(aug.views[v], img.height, img.width, 10, 10, gen);
      apply_view(img, p, 10, 10, aug.normalization, want.data(), ws);
      CHECK(std::memcmp(b->views[v].data<float>() + i * 300, want.data(), 300 * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("batch buffers are reused once released, and held batches stay intact", "[loader]") {
  auto ds = synthetic(40);
  const AugmentOptions aug = AugmentOptions::eval(8, Normalization::none(), 1.0);
  int allocations = 0;
  LoaderOptions opt{.batch_size = 4, .workers = 2, .prefetch = 2};
  opt.allocate = [&](const Shape& s, DType t) {
    ++allocations;
    return Tensor::empty(s, t);
  };
  Loader loader(ds, aug, opt);
  loader.start_epoch(0);
  std::set<const void*> buffers;
  // hold every batch: the loader must keep going (allocating more slots) without deadlocking
  std::vector<Batch> held;
  while (auto b = loader.next()) held.push_back(std::move(*b));
  CHECK(held.size() == 10);
  for (const Batch& b : held) buffers.insert(b.views[0].raw_data());
  CHECK(buffers.size() == 10);  // all distinct while held
  const std::vector<float> first = held[0].views[0].to_vector<float>();
  held.clear();
  const int slots = allocations / 2;  // a view and the labels per slot
  loader.start_epoch(0);
  while (auto b = loader.next()) {
    if (b->number == 0) CHECK(b->views[0].to_vector<float>() == first);
    CHECK(buffers.count(b->views[0].raw_data()) == 1);  // recycled, not new
  }
  CHECK(allocations / 2 == slots);
}

TEST_CASE("restarting an epoch mid-way discards the batches in flight", "[loader]") {
  auto ds = synthetic(64, 4, 16);
  const AugmentOptions aug = AugmentOptions::byol(12, Normalization::imagenet());
  Loader a(ds, aug, {.batch_size = 8, .workers = 2, .prefetch = 3, .seed = 1});
  a.start_epoch(0);
  a.next();
  a.next();
  const Collected restarted = collect(a, 1);
  Loader fresh(ds, aug, {.batch_size = 8, .workers = 0, .seed = 1});
  const Collected c = collect(fresh, 1);
  CHECK(restarted.indices == c.indices);
  CHECK(restarted.view0 == c.view0);
}

TEST_CASE("unlabeled datasets give batches without labels; bad options are rejected", "[loader]") {
  std::vector<uint8_t> pixels(6 * 5 * 5 * 3, 100);
  auto ds =
      std::make_shared<InMemoryDataset>("six gray squares", pixels, 6, 5, 5, 3, std::vector<int64_t>{}, 0);
  Loader loader(ds, AugmentOptions::eval(5, Normalization{{0.2f, 0.2f, 0.2f}, {0.5f, 0.5f, 0.5f}}, 1.0),
                {.batch_size = 3, .workers = 1});
  loader.start_epoch(0);
  auto b = loader.next();
  REQUIRE(b);
  CHECK(!b->labels.defined());
  for (float v : b->views[0].to_vector<float>()) CHECK(v == Approx((100 / 255.0 - 0.2) / 0.5).margin(1e-5));
  CHECK_THROWS_WITH(Loader(ds, AugmentOptions{}, {.batch_size = 0}), Catch::Contains("batch_size"));
  CHECK_THROWS_WITH(Loader(ds, AugmentOptions{}, {.rank = 2, .world_size = 2}), Catch::Contains("rank"));
  CHECK_THROWS_WITH(Loader(ds, AugmentOptions{}, {.prefetch = 0}), Catch::Contains("prefetch"));
  Loader idle(ds, AugmentOptions{}, {});
  CHECK_THROWS_WITH(idle.next(), Catch::Contains("start_epoch"));
}

TEST_CASE("raw batches (the GPU augmentation's input) hold each row's image and its views' parameters",
          "[loader]") {
  // LoaderOptions::raw delivers the decoded images and the AugmentParams the CPU path draws: applying them
  // on the host gives the CPU loader's views bit for bit (the CUDA kernel applies the same ones:
  // tests/test_cuda_augment.cpp). A partial last batch, several workers, one-image chunks.
  auto ds = synthetic(23, 4, 18);
  const AugmentOptions aug = AugmentOptions::byol(12, Normalization::cifar10());
  Loader cpu(ds, aug, {.batch_size = 5, .workers = 2, .seed = 9, .drop_last = false});
  Loader raw(ds, aug,
             {.batch_size = 5, .workers = 3, .seed = 9, .drop_last = false, .chunk = 1, .raw = true});
  for (int64_t epoch : {0, 3}) {
    cpu.start_epoch(epoch);
    raw.start_epoch(epoch);
    int64_t batches = 0;
    AugmentWorkspace ws;
    std::vector<float> got(12 * 12 * 3);
    while (std::optional<Batch> a = cpu.next()) {
      std::optional<Batch> b = raw.next();
      REQUIRE(b);
      ++batches;
      CHECK(b->views.empty());
      CHECK(b->indices == a->indices);
      CHECK(b->labels.to_vector<int64_t>() == a->labels.to_vector<int64_t>());
      REQUIRE(b->sources.size() == a->indices.size());
      REQUIRE(b->params.size() == 2);
      int64_t packed = 0;
      for (size_t i = 0; i < b->sources.size(); ++i) {
        const math::AugmentSource& s = b->sources[i];
        CHECK(s.offset == packed);
        packed += int64_t(s.height) * s.width * s.channels;
        const ImageView img{b->pixels.data<uint8_t>() + s.offset, s.height, s.width, s.channels};
        for (int v = 0; v < 2; ++v) {
          REQUIRE(b->params[v].size() == b->sources.size());
          apply_view(img, b->params[v][i], 12, 12, aug.normalization, got.data(), ws);
          CHECK(std::memcmp(a->views[v].data<float>() + i * got.size(), got.data(),
                            got.size() * sizeof(float)) == 0);
        }
      }
      CHECK(b->pixels.numel() == packed);
    }
    CHECK(!raw.next());
    CHECK(batches == 5);  // 23 images in batches of 5, the last partial
  }
}
