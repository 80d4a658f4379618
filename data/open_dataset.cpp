// open_dataset: the dataset spec strings the apps take on their command line (see dataset.h).
#include <filesystem>

#include "data/dataset.h"
#include "data/packed.h"
#include "engine/common.h"

namespace byol::data {

namespace {

std::vector<std::string> split_spec(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t colon = s.find(':', start);
    parts.push_back(s.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return parts;
}

Split parse_split(const std::string& s, const std::string& spec) {
  if (s.empty() || s == "train") return Split::train;
  if (s == "test") return Split::test;
  if (s == "unlabeled") return Split::unlabeled;
  BYOL_FAIL("open_dataset: '", spec, "': expected the split train, test or unlabeled, got '", s, "'");
}

int64_t parse_int(const std::string& s, const std::string& what, const std::string& spec) {
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  BYOL_FAIL("open_dataset: '", spec, "': expected an integer for ", what, ", got '", s, "'");
}

}  // namespace

namespace {

std::shared_ptr<Dataset> open(const std::string& spec) {
  const std::vector<std::string> p = split_spec(spec);
  const std::string& kind = p[0];
  auto arg = [&](size_t i) { return i < p.size() ? p[i] : std::string(); };
  auto need = [&](size_t n, const char* usage) {
    BYOL_CHECK(p.size() >= n && !p[1].empty(), "open_dataset: '", spec, "': expected ", usage);
  };
  if (kind == "folder") {
    need(2, "folder:<dir>");
    return std::make_shared<ImageFolder>(arg(1));
  }
  if (kind == "tar") {
    need(2, "tar:<file.tar[.gz]>[:<folder inside>]");
    return std::make_shared<ImageFolder>(arg(1), arg(2));
  }
  if (kind == "cifar10") {
    need(2, "cifar10:<dir>[:train|test]");
    return load_cifar10(arg(1), parse_split(arg(2), spec));
  }
  if (kind == "cifar100") {
    need(2, "cifar100:<dir>[:train|test]");
    return load_cifar100(arg(1), parse_split(arg(2), spec));
  }
  if (kind == "stl10") {
    need(2, "stl10:<dir>[:train|test|unlabeled]");
    return load_stl10(arg(1), parse_split(arg(2), spec));
  }
  if (kind == "idx") {
    need(2, "idx:<images>[:<labels>]");
    return load_idx(arg(1), arg(2), 10);
  }
  if (kind == "fashion-mnist") {
    // fashion-mnist, fashion-mnist:test, fashion-mnist:<dir>, fashion-mnist:<dir>:test
    std::string dir = kFashionMnistDir, split = arg(1);
    if (p.size() >= 2 && split != "train" && split != "test" && !split.empty()) {
      dir = arg(1);
      split = arg(2);
    }
    return load_fashion_mnist(dir, parse_split(split, spec));
  }
  if (kind == "packed") {
    need(2, "packed:<prefix>");
    return std::make_shared<PackedDataset>(arg(1));
  }
  if (kind == "synthetic") {
    BYOL_CHECK(p.size() >= 4, "open_dataset: '", spec,
               "': expected synthetic:<count>:<classes>:<side>[:<seed>]");
    return std::make_shared<SyntheticDataset>(
        parse_int(p[1], "count", spec), int(parse_int(p[2], "classes", spec)),
        int(parse_int(p[3], "side", spec)), p.size() > 4 ? uint64_t(parse_int(p[4], "seed", spec)) : 0);
  }
  std::error_code ec;
  if (p.size() == 1 && std::filesystem::is_directory(spec, ec)) return std::make_shared<ImageFolder>(spec);
  BYOL_FAIL(
      "open_dataset: '", spec, "': unknown dataset kind '", kind,
      "' (expected folder:, tar:, cifar10:, cifar100:, stl10:, idx:, fashion-mnist, packed:, synthetic:, or "
      "an existing directory)");
}

}  // namespace

std::shared_ptr<Dataset> open_dataset(const std::string& spec) {
  return with_context(cat("dataset '", spec, "'"), [&] { return open(spec); });
}

std::string test_overlap_warning(const std::string& train_spec, const std::string& test_spec) {
  if (train_spec == test_spec)
    return cat("the test set '", test_spec,
               "' is the training set: its accuracy measures memory, not features");
  const std::vector<std::string> a = split_spec(train_spec), b = split_spec(test_spec);
  if (a.size() >= 4 && b.size() >= 4 && a[0] == "synthetic" && b[0] == "synthetic") {
    const std::string seed_a = a.size() > 4 ? a[4] : "0", seed_b = b.size() > 4 ? b[4] : "0";
    if (seed_a == seed_b && a[2] == b[2] && a[3] == b[3])
      return cat("the synthetic sets '", train_spec, "' and '", test_spec, "' share seed ", seed_a,
                 ": the test images are training images; give the test set its own seed (synthetic:", b[1],
                 ":", b[2], ":", b[3], ":<seed>)");
  }
  return "";
}

}  // namespace byol::data
