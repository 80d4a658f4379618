// byol-pack: decodes (and optionally resizes) a dataset once into the packed format (data/packed.h), so
// training reads uint8 pixels from memory-mapped shards instead of decoding JPEGs every epoch.
//
//   byol-pack <dataset spec> <output prefix> [--short-side S] [--crop S] [--shard-mb M] [--threads N]
//             [--skip-corrupt] [--force] [--dry-run] [--version] [--verbose]
//
// Examples:
//   byol-pack folder:/data/imagenet/train /data/packed/imagenet-train-160 --short-side 160
//   byol-pack tar:/work/shared/data/cifar10.tar.gz:cifar10/train /tmp/cifar10-train
//
// --short-side resizes so the shorter side is S (bicubic, antialiased); --crop then keeps the centred
// S x S square. Dataset specs are those of data::open_dataset (data/dataset.h). The prefix's folder is
// created when missing; an existing pack under the prefix is replaced only with --force (the old one stays
// readable until the new one is complete). Exit status: 0 done, 1 an error, 2 a usage error.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "apps/version.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/packed.h"
#include "engine/common.h"

namespace {

struct Args {
  std::string spec, prefix;
  int short_side = 0, crop = 0;
  int64_t shard_mb = 1024;
  int threads = std::max(1u, std::thread::hardware_concurrency());
  bool skip_corrupt = false;
  bool force = false;
  bool dry_run = false;  // open the dataset and check the prefix, write nothing
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(
      stderr,
      "byol-pack: %s\n"
      "usage: byol-pack <dataset spec> <output prefix> [--short-side S] [--crop S] [--shard-mb M]\n"
      "                 [--threads N] [--skip-corrupt] [--force] [--dry-run] [--version] [--verbose]\n"
      "dataset specs: folder:<dir>  tar:<file.tar[.gz]>[:<folder>]  cifar10:<dir>[:train|test]\n"
      "               cifar100:<dir>[:train|test]  stl10:<dir>[:train|test|unlabeled]\n"
      "               idx:<images>[:<labels>]  fashion-mnist[:<dir>][:train|test]  packed:<prefix>\n"
      "               synthetic:<count>:<classes>:<side>[:<seed>]\n",
      why);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + s).c_str());
      return argv[++i];
    };
    auto number = [&]() {
      const std::string v = value();
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 0) usage((s + " expects a non-negative integer, got '" + v + "'").c_str());
      return n;
    };
    if (s == "--short-side")
      a.short_side = int(number());
    else if (s == "--crop")
      a.crop = int(number());
    else if (s == "--shard-mb")
      a.shard_mb = number();
    else if (s == "--threads")
      a.threads = std::max(1, int(number()));
    else if (s == "--skip-corrupt")
      a.skip_corrupt = true;
    else if (s == "--force")
      a.force = true;
    else if (s == "--dry-run")
      a.dry_run = true;
    else if (s == "--verbose")
      continue;  // read by main(): errors show their source location
    else if (s == "-h" || s == "--help")
      usage("packs a dataset");
    else if (s == "--version") {
      std::printf("%s\n", byol::apps::version_line("byol-pack").c_str());
      std::exit(0);
    } else if (!s.empty() && s[0] == '-')
      usage(("unknown option " + s).c_str());
    else
      positional.push_back(s);
  }
  if (positional.size() != 2) usage("expected a dataset spec and an output prefix");
  a.spec = positional[0];
  a.prefix = positional[1];
  if (a.shard_mb == 0) usage("--shard-mb must be positive");
  return a;
}

struct Packed {
  std::vector<uint8_t> pixels;
  int h = 0, w = 0, c = 0;
  std::string error;
};

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  try {
    using namespace byol::data;
    const auto start = std::chrono::steady_clock::now();
    const std::filesystem::path index = args.prefix + ".index",
                                folder = std::filesystem::path(args.prefix).parent_path();
    if (std::filesystem::exists(index) && !args.force)
      throw byol::Error(byol::cat(index.string(), " exists: give --force to replace that pack"));
    std::shared_ptr<Dataset> ds = open_dataset(args.spec);
    if (args.dry_run) {
      std::printf(
          "byol-pack --dry-run: %s (%lld images) -> %s.index (+ shards of %lld MiB); nothing written\n",
          ds->describe().c_str(), static_cast<long long>(ds->size()), args.prefix.c_str(),
          static_cast<long long>(args.shard_mb));
      return 0;
    }
    if (!folder.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(folder, ec);
      if (ec) throw byol::Error(byol::cat("cannot create the folder ", folder.string(), ": ", ec.message()));
    }
    std::vector<std::string> classes = ds->class_names();
    if (ds->has_labels() && int(classes.size()) != ds->num_classes()) {
      classes.clear();
      for (int k = 0; k < ds->num_classes(); ++k) classes.push_back(std::to_string(k));
    }
    std::printf("byol-pack: %s -> %s.index (+ shards of %lld MiB), %d threads\n", ds->describe().c_str(),
                args.prefix.c_str(), static_cast<long long>(args.shard_mb), args.threads);
    PackWriter writer(args.prefix, classes, args.shard_mb << 20);
    const int64_t n = ds->size(), block = 1024;
    const DecodeHint hint{args.short_side};
    std::vector<Packed> out(block);
    int64_t skipped = 0, bytes = 0;
    for (int64_t first = 0; first < n; first += block) {
      const int64_t count = std::min(block, n - first);
      std::atomic<int64_t> next{0};
      auto work = [&] {
        std::vector<uint8_t> scratch;
        AugmentWorkspace ws;
        for (int64_t k; (k = next.fetch_add(1)) < count;) {
          Packed& p = out[k];
          p.error.clear();
          try {
            const ImageView img = ds->image(first + k, scratch, hint);
            if (args.short_side > 0 || args.crop > 0) {
              resize_short_side_center_crop(img, args.short_side, args.crop, args.crop, p.pixels, &p.h, &p.w,
                                            ws);
              p.c = 3;
            } else {
              p.pixels.assign(img.data, img.data + img.bytes());
              p.h = img.height, p.w = img.width, p.c = img.channels;
            }
          } catch (const byol::Error& e) {
            p.error = e.what();
          }
        }
      };
      std::vector<std::thread> pool;
      for (int t = 1; t < args.threads; ++t) pool.emplace_back(work);
      work();
      for (std::thread& t : pool) t.join();
      for (int64_t k = 0; k < count; ++k) {
        const Packed& p = out[k];
        if (!p.error.empty()) {
          if (!args.skip_corrupt) throw byol::Error(p.error + " (use --skip-corrupt to leave it out)");
          std::fprintf(stderr, "byol-pack: skipping %s\n", p.error.c_str());
          ++skipped;
          continue;
        }
        writer.add({p.pixels.data(), p.h, p.w, p.c}, ds->label(first + k));
        bytes += int64_t(p.pixels.size());
      }
      if ((first / block) % 10 == 9 || first + count == n)
        std::printf("  %lld / %lld images\n", static_cast<long long>(first + count),
                    static_cast<long long>(n));
    }
    writer.finish();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("byol-pack: wrote %lld images (%.1f MiB of pixels), skipped %lld, in %.1f s\n",
                static_cast<long long>(writer.count()), bytes / 1048576.0, static_cast<long long>(skipped),
                s);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "byol-pack: error: %s\n",
                 byol::error_text(e, byol::apps::verbose_errors(argc, argv)).c_str());
    return 1;
  }
}
