// Loader benchmark: images per second per core for BYOL's two augmented views per image, at 32x32
// (CIFAR) and at 224x224 (ImageNet-sized views from upscaled CIFAR images).
//
//   loader_bench [--data <dataset spec>] [--images N] [--big-images N] [--batch B] [--workers W]
//                [--json FILE]
//
// Source: --data if given; else CIFAR-10's training JPEGs from /work/shared/data/cifar10.tar.gz when that
// archive exists (read into memory once, so no disk I/O is timed); else a synthetic 32x32 dataset. The
// first line says which. For each size it reports:
//   decode     dataset->image() alone (JPEG decoding for CIFAR), one thread
//   augment    sample_view + apply_view for both views from decoded images, one thread
//   loader     the whole Loader (decode + augment into batch buffers) with 1 worker and with W workers;
//              images/s per core = images/s / workers
// Target (issue 4): 4,000 CIFAR images/s per core at 32x32. --json FILE writes the same rows as one JSON
// object (benchmarks/bench_json.h).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "benchmarks/bench_json.h"
#include "data/loader.h"

using namespace byol::data;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Each timing function returns the seconds its n images took.
double decode_seconds(const Dataset& ds, int64_t n) {
  std::vector<uint8_t> scratch;
  const auto t = Clock::now();
  uint64_t sink = 0;
  for (int64_t i = 0; i < n; ++i) sink += ds.image(i % ds.size(), scratch).data[0];
  const double s = seconds_since(t);
  if (sink == 1) std::printf(" ");
  return s;
}

double augment_seconds(const Dataset& ds, const AugmentOptions& aug, int64_t n) {
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
  return seconds_since(t);
}

// The loader's seconds for its second epoch over the first n images (drop_last: images counts what it
// delivered).
double loader_seconds(std::shared_ptr<const Dataset> ds, const AugmentOptions& aug, int64_t n, int64_t batch,
                      int workers, int64_t& images) {
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
  images = 0;
  while (auto b = loader.next()) images += b->size();
  return seconds_since(t);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"loader_bench: images/s per core of the data loader (decode + BYOL's two views)"};
  std::string spec, json_path;
  int64_t images = 20000, big_images = 1000, batch = 256;
  int workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cli.add_option("--data", spec,
                 "dataset spec (default: CIFAR-10 from /work/shared/data/cifar10.tar.gz, else synthetic)");
  cli.add_option("--images", images, "images timed at 32x32")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 32))
      ->capture_default_str();
  cli.add_option("--big-images", big_images, "images timed at 224x224")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 32))
      ->capture_default_str();
  cli.add_option("--batch", batch, "loader batch size (at most a quarter of the images)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  cli.add_option("--workers", workers, "loader workers of the multi-worker run (1: that run is left out)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cli.add_option("--json", json_path, "also write the results to FILE as one JSON object")->type_name("FILE");
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;  // --help: 0; a usage error: 2, as the apps
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
    byol::bench::Json result = byol::bench::result_header("loader_bench");
    result["source"] = source;
    result["hardware_threads"] = std::thread::hardware_concurrency();
    result["options"] = {{"data", spec},
                         {"images", images},
                         {"big_images", big_images},
                         {"batch", batch},
                         {"workers", workers}};
    byol::bench::Json& rows = result["rows"] = byol::bench::Json::array();
    struct Case {
      const char* name;
      int side;
      int64_t n;
    };
    for (const Case& c : {Case{"two 32x32 views", 32, images}, Case{"two 224x224 views", 224, big_images}}) {
      const AugmentOptions aug = AugmentOptions::byol(c.side, Normalization::imagenet());
      const int64_t b = std::max<int64_t>(1, std::min<int64_t>(batch, c.n / 4));
      // One row: `n` images in `s` seconds on `threads` threads (loader workers).
      auto row = [&](const char* name, int threads, int64_t n, double s) {
        rows.push_back({{"table", c.name},
                        {"name", name},
                        {"side", c.side},
                        {"images", n},
                        {"threads", threads},
                        {"time_ms", 1e3 * s},
                        {"images_per_s", n / s},
                        {"images_per_s_per_core", n / s / threads}});
        return n / s;
      };
      std::printf("%s per image (%lld images):\n", c.name, static_cast<long long>(c.n));
      std::printf("  decode only,          1 thread : %8.0f images/s\n",
                  row("decode only", 1, c.n, decode_seconds(*ds, c.n)));
      std::printf("  augment only,         1 thread : %8.0f images/s\n",
                  row("augment only", 1, c.n, augment_seconds(*ds, aug, c.n)));
      int64_t delivered = 0;
      double s = loader_seconds(ds, aug, c.n, b, 1, delivered);
      const double one = row("loader", 1, delivered, s);
      std::printf("  loader,               1 worker : %8.0f images/s = %8.0f images/s per core\n", one, one);
      if (workers > 1) {
        s = loader_seconds(ds, aug, c.n, b, workers, delivered);
        const double all = row("loader", workers, delivered, s);
        std::printf("  loader,             %2d workers : %8.0f images/s = %8.0f images/s per core\n", workers,
                    all, all / workers);
      }
      std::printf("\n");
    }
    if (!json_path.empty()) byol::bench::write_json_atomically(json_path, result);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loader_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
