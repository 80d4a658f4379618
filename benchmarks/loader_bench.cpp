// Loader benchmark: images per second per core for BYOL's two augmented views per image, at 32x32
// (CIFAR) and at 224x224 (ImageNet-sized views from upscaled CIFAR images).
//
//   loader_bench [--data <dataset spec>] [--images N] [--big-images N] [--batch B] [--workers W]
//
// Source: --data if given; else CIFAR-10's training JPEGs from /work/shared/data/cifar10.tar.gz when that
// archive exists (read into memory once, so no disk I/O is timed); else a synthetic 32x32 dataset. The
// first line says which. For each size it reports:
//   decode     dataset->image() alone (JPEG decoding for CIFAR), one thread
//   augment    sample_view + apply_view for both views from decoded images, one thread
//   loader     the whole Loader (decode + augment into batch buffers) with 1 worker and with W workers;
//              images/s per core = images/s / workers
// Target (issue 4): 4,000 CIFAR images/s per core at 32x32.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "data/loader.h"

using namespace byol::data;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double decode_rate(const Dataset& ds, int64_t n) {
  std::vector<uint8_t> scratch;
  const auto t = Clock::now();
  uint64_t sink = 0;
  for (int64_t i = 0; i < n; ++i) sink += ds.image(i % ds.size(), scratch).data[0];
  const double s = seconds_since(t);
  if (sink == 1) std::printf(" ");
  return n / s;
}

double augment_rate(const Dataset& ds, const AugmentOptions& aug, int64_t n) {
  // decode a pool of images first, then time only the augmentation
  const int64_t pool_size = std::min<int64_t>(n, 512);
  std::vector<std::vector<uint8_t>> pixels(pool_size);
  std::vector<ImageView> views(pool_size);
  for (int64_t i = 0; i < pool_size; ++i) {
    std::vector<uint8_t> scratch;
    const ImageView v = ds.image(i % ds.size(), scratch);
    pixels[i].assign(v.data, v.data + v.bytes());
    views[i] = {pixels[i].data(), v.height, v.width, v.channels};
  }
  std::vector<float> out(size_t(aug.height) * aug.width * 3);
  AugmentWorkspace ws;
  const auto t = Clock::now();
  for (int64_t i = 0; i < n; ++i) {
    const ImageView& img = views[i % pool_size];
    std::mt19937_64 gen = image_generator(0, 0, i);
    for (const ViewOptions& v : aug.views) {
      const AugmentParams p = sample_view(v, img.height, img.width, aug.height, aug.width, gen);
      apply_view(img, p, aug.height, aug.width, aug.normalization, out.data(), ws);
    }
  }
  return n / seconds_since(t);
}

double loader_rate(std::shared_ptr<const Dataset> ds, const AugmentOptions& aug, int64_t n, int64_t batch,
                   int workers) {
  auto subset = std::make_shared<Subset>(ds, [&] {
    std::vector<int64_t> idx(std::min<int64_t>(n, ds->size()));
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = int64_t(i);
    return idx;
  }());
  Loader loader(subset, aug, {.batch_size = batch, .workers = workers, .prefetch = 2 * workers, .seed = 1});
  // warm-up epoch allocates the batch buffers and touches their pages
  loader.start_epoch(0);
  for (int k = 0; k < 2 && loader.next(); ++k) {
  }
  loader.start_epoch(1);
  const auto t = Clock::now();
  int64_t images = 0;
  while (auto b = loader.next()) images += b->size();
  return images / seconds_since(t);
}

}  // namespace

int main(int argc, char** argv) {
  std::string spec;
  int64_t images = 20000, big_images = 1000, batch = 256;
  int workers = std::max(1u, std::thread::hardware_concurrency());
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "loader_bench: missing value after %s\n", a.c_str());
        std::exit(2);
      }
      return std::string(argv[++i]);
    };
    if (a == "--data")
      spec = next();
    else if (a == "--images")
      images = std::stoll(next());
    else if (a == "--big-images")
      big_images = std::stoll(next());
    else if (a == "--batch")
      batch = std::stoll(next());
    else if (a == "--workers")
      workers = std::stoi(next());
    else {
      std::fprintf(
          stderr,
          "usage: loader_bench [--data <spec>] [--images N] [--big-images N] [--batch B] [--workers W]\n");
      return 2;
    }
  }
  try {
    const char* shipped = "/work/shared/data/cifar10.tar.gz";
    std::string source;
    if (spec.empty() && std::filesystem::exists(shipped))
      spec = std::string("tar:") + shipped + ":cifar10/train";
    if (spec.empty()) {
      spec = "synthetic:50000:10:32";
      source = "SYNTHETIC 32x32 images (no CIFAR-10 archive found; pass --data to use real JPEGs)";
    }
    const auto t = Clock::now();
    std::shared_ptr<const Dataset> ds = open_dataset(spec);
    if (source.empty()) source = ds->describe();
    std::printf("loader_bench: source %s (opened in %.1f s)\n", source.c_str(), seconds_since(t));
    std::printf("hardware threads %u, loader workers %d, batch %lld\n\n", std::thread::hardware_concurrency(),
                workers, static_cast<long long>(batch));
    struct Case {
      const char* name;
      int side;
      int64_t n;
    };
    for (const Case& c : {Case{"two 32x32 views", 32, images}, Case{"two 224x224 views", 224, big_images}}) {
      const AugmentOptions aug = AugmentOptions::byol(c.side, Normalization::imagenet());
      const int64_t b = std::min<int64_t>(batch, c.n / 4);
      std::printf("%s per image (%lld images):\n", c.name, static_cast<long long>(c.n));
      std::printf("  decode only,          1 thread : %8.0f images/s\n", decode_rate(*ds, c.n));
      std::printf("  augment only,         1 thread : %8.0f images/s\n", augment_rate(*ds, aug, c.n));
      const double one = loader_rate(ds, aug, c.n, b, 1);
      std::printf("  loader,               1 worker : %8.0f images/s = %8.0f images/s per core\n", one, one);
      if (workers > 1) {
        const double all = loader_rate(ds, aug, c.n, b, workers);
        std::printf("  loader,             %2d workers : %8.0f images/s = %8.0f images/s per core\n", workers,
                    all, all / workers);
      }
      std::printf("\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loader_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
