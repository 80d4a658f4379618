// Image folders (plain or inside a tar archive), CIFAR / STL-10 / IDX binaries, synthetic data, subsets.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <random>

#include "data/augment.h"
#include "data/dataset.h"
#include "data/mapped_file.h"
#include "engine/common.h"

namespace fs = std::filesystem;

namespace byol::data {

std::string Dataset::item_name(int64_t index) const {
  return cat(describe(), " item ", index);
}

void Dataset::check_index(int64_t index) const {
  BYOL_CHECK(index >= 0 && index < size(), describe(), ": index ", index, " out of range [0, ", size(), ")");
}

const char* split_name(Split s) {
  switch (s) {
    case Split::train:
      return "train";
    case Split::test:
      return "test";
    case Split::unlabeled:
      return "unlabeled";
  }
  return "?";
}

// --- image folders -------------------------------------------------------------------------------------

namespace {

bool has_image_extension(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == "jpg" || ext == "jpeg" || ext == "png";
}

bool is_archive_name(const std::string& path) {
  auto ends = [&](const char* s) {
    const size_t n = std::strlen(s);
    return path.size() >= n && path.compare(path.size() - n, n, s) == 0;
  };
  return ends(".tar") || ends(".tar.gz") || ends(".tgz");
}

uint64_t parse_octal(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n && p[i]; ++i) {
    if (p[i] == ' ') continue;
    if (p[i] < '0' || p[i] > '7') break;
    v = v * 8 + (p[i] - '0');
  }
  return v;
}

struct TarMember {
  std::string name;
  bool is_dir;
  size_t offset, size;
};

// ustar / GNU tar: 512-byte headers, data padded to 512 bytes; GNU 'L' long names and pax 'x' path
// records are honoured.
std::vector<TarMember> parse_tar(const std::vector<uint8_t>& tar, const std::string& source) {
  std::vector<TarMember> members;
  size_t pos = 0;
  std::string long_name;
  while (pos + 512 <= tar.size()) {
    const uint8_t* h = tar.data() + pos;
    if (std::all_of(h, h + 512, [](uint8_t b) { return b == 0; })) break;  // end-of-archive block
    uint64_t checksum = 0;
    for (int i = 0; i < 512; ++i) checksum += (i >= 148 && i < 156) ? ' ' : h[i];
    BYOL_CHECK(checksum == parse_octal(h + 148, 8), "ImageFolder: '", source,
               "' is not a valid tar archive (header checksum mismatch at byte ", pos, ")");
    const uint64_t size = parse_octal(h + 124, 12);
    const char type = static_cast<char>(h[156]);
    const size_t data = pos + 512;
    BYOL_CHECK(data + size <= tar.size(), "ImageFolder: '", source, "' is truncated (a member at byte ", pos,
               " needs ", size, " bytes)");
    std::string name;
    if (!long_name.empty()) {
      name = long_name;
      long_name.clear();
    } else {
      const std::string base(reinterpret_cast<const char*>(h),
                             strnlen(reinterpret_cast<const char*>(h), 100));
      const std::string prefix(
          reinterpret_cast<const char*>(h + 345),
          std::memcmp(h + 257, "ustar", 5) == 0 ? strnlen(reinterpret_cast<const char*>(h + 345), 155) : 0);
      name = prefix.empty() ? base : prefix + "/" + base;
    }
    if (type == 'L') {
      long_name.assign(reinterpret_cast<const char*>(tar.data() + data),
                       strnlen(reinterpret_cast<const char*>(tar.data() + data), size));
    } else if (type == 'x') {
      const std::string records(reinterpret_cast<const char*>(tar.data() + data), size);
      const size_t at = records.find(" path=");
      if (at != std::string::npos) long_name = records.substr(at + 6, records.find('\n', at) - at - 6);
    } else if (type == '0' || type == '\0' || type == '5') {
      // A member must stay inside the archive's tree: '../../x.jpg' would name a class '..', and an
      // absolute path belongs to no class folder. Refuse both, by name, rather than guess.
      BYOL_CHECK(name.empty() || name.front() != '/', "ImageFolder: '", source, "' has a member with an absolute path, '",
                 name, "' (expected paths relative to the archive's root)");
      for (size_t a = 0; a <= name.size();) {
        const size_t b = std::min(name.find('/', a), name.size());
        BYOL_CHECK(name.compare(a, b - a, "..") != 0, "ImageFolder: '", source, "' has a member '", name,
                   "' with a '..' component (a path outside the archive's root)");
        a = b + 1;
      }
      while (name.rfind("./", 0) == 0) name.erase(0, 2);
      if (!name.empty() && name.back() == '/') name.pop_back();
      if (!name.empty()) members.push_back({name, type == '5', data, size});
    }
    pos = data + (size + 511) / 512 * 512;
  }
  return members;
}

}  // namespace

ImageFolder::ImageFolder(const std::string& root, const std::string& prefix) : root_(root) {
  with_context(cat("ImageFolder: '", root, "'"), [&] { scan(prefix); });
}

void ImageFolder::scan(const std::string& prefix) {
  const std::string& root = root_;
  std::error_code ec;
  if (!fs::exists(root, ec))
    BYOL_FAIL("ImageFolder: '", root, "' does not exist (expected a folder of images)");
  std::map<std::string, std::vector<Item>> by_class;  // "" holds images directly under the root
  std::vector<std::string> empty_folders;
  if (fs::is_regular_file(root) && is_archive_name(root)) {
    archive_ = read_file_maybe_gz(root);
    std::string pre = prefix;
    while (!pre.empty() && pre.back() == '/') pre.pop_back();
    std::map<std::string, bool> dirs;  // class folder -> has images
    for (const TarMember& m : parse_tar(archive_, root)) {
      std::string rel = m.name;
      if (!pre.empty()) {
        if (rel.rfind(pre + "/", 0) != 0) continue;
        rel = rel.substr(pre.size() + 1);
      }
      const size_t slash = rel.find('/');
      const std::string cls = slash == std::string::npos ? "" : rel.substr(0, slash);
      if (m.is_dir) {
        if (slash == std::string::npos) dirs.emplace(rel, false);
        continue;
      }
      if (!has_image_extension(rel)) continue;
      if (!cls.empty()) dirs[cls] = true;
      by_class[cls].push_back({m.name, -1, m.offset, m.size});
    }
    for (const auto& [d, has] : dirs)
      if (!has) empty_folders.push_back(root + ":" + (pre.empty() ? "" : pre + "/") + d);
    if (by_class.empty() && empty_folders.empty())
      BYOL_FAIL("ImageFolder: archive '", root, "' has no .jpg/.jpeg/.png images",
                pre.empty() ? std::string() : " under '" + pre + "/'");
  } else {
    const fs::path base = prefix.empty() ? fs::path(root) : fs::path(root) / prefix;
    if (!fs::is_directory(base, ec)) BYOL_FAIL("ImageFolder: '", base.string(), "' is not a directory");
    for (const fs::directory_entry& e : fs::directory_iterator(base)) {
      if (e.is_directory()) {
        std::vector<Item>& items = by_class[e.path().filename().string()];
        for (const fs::directory_entry& f : fs::recursive_directory_iterator(e.path()))
          if (f.is_regular_file() && has_image_extension(f.path().filename().string()))
            items.push_back({f.path().string(), -1, 0, 0});
        if (items.empty()) {
          empty_folders.push_back(e.path().string());
          by_class.erase(e.path().filename().string());
        }
      } else if (e.is_regular_file() && has_image_extension(e.path().filename().string())) {
        by_class[""].push_back({e.path().string(), -1, 0, 0});
      }
    }
  }
  if (!empty_folders.empty()) {
    std::sort(empty_folders.begin(), empty_folders.end());
    BYOL_FAIL("ImageFolder: class folder '", empty_folders.front(),
              "' has no .jpg/.jpeg/.png images (every class folder needs at least one)");
  }
  const bool labeled = by_class.size() > 1 || (by_class.size() == 1 && !by_class.count(""));
  if (by_class.empty())
    BYOL_FAIL("ImageFolder: '", root, "' has no .jpg/.jpeg/.png images and no class folders");
  for (auto& [cls, items] : by_class) {
    if (labeled && cls.empty()) continue;  // loose files beside class folders are not part of any class
    std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) { return a.path < b.path; });
    const int label = labeled ? static_cast<int>(classes_.size()) : -1;
    if (labeled) classes_.push_back(cls);
    for (Item& it : items) {
      it.label = label;
      items_.push_back(std::move(it));
    }
  }
}

int64_t ImageFolder::label(int64_t index) const {
  check_index(index);
  return items_[index].label;
}

ImageView ImageFolder::image(int64_t index, std::vector<uint8_t>& scratch, const DecodeHint& hint) const {
  check_index(index);
  const Item& it = items_[index];
  if (!archive_.empty())
    return decode_image(archive_.data() + it.offset, it.size, scratch, root_ + ":" + it.path, hint.min_side);
  thread_local std::vector<uint8_t> file;
  read_file_into(it.path, file);
  return decode_image(file.data(), file.size(), scratch, it.path, hint.min_side);
}

std::string ImageFolder::describe() const {
  return cat("image folder '", root_, "' (", items_.size(), " images, ", classes_.size(), " classes)");
}

std::string ImageFolder::item_name(int64_t index) const {
  check_index(index);
  return archive_.empty() ? items_[index].path : root_ + ":" + items_[index].path;
}

// --- in-memory images ----------------------------------------------------------------------------------

InMemoryDataset::InMemoryDataset(std::string name, std::vector<uint8_t> pixels, int64_t count, int height,
                                 int width, int channels, std::vector<int64_t> labels, int num_classes,
                                 std::vector<std::string> class_names)
    : name_(std::move(name)),
      pixels_(std::move(pixels)),
      count_(count),
      height_(height),
      width_(width),
      channels_(channels),
      labels_(std::move(labels)),
      num_classes_(num_classes),
      class_names_(std::move(class_names)) {
  BYOL_CHECK(channels == 1 || channels == 3, name_, ": expected 1 or 3 channels, got ", channels);
  BYOL_CHECK(count >= 0 && height >= 1 && width >= 1, name_,
             ": expected a count >= 0 and images of at least 1x1, got ", count, " images of ", height, "x",
             width);
  uint64_t bytes = 0;  // unsigned: height * width * channels < 2^64 for any int sizes; the count may wrap
  const bool wraps =
      __builtin_mul_overflow(uint64_t(count), uint64_t(height) * uint64_t(width) * channels, &bytes);
  BYOL_CHECK(!wraps && pixels_.size() == bytes, name_, ": expected ", count, " x ", height, " x ", width,
             " x ", channels, " pixel bytes for ", count, " images of ", height, "x", width, "x", channels,
             ", got ", pixels_.size());
  BYOL_CHECK(labels_.empty() || int64_t(labels_.size()) == count, name_, ": expected ", count,
             " labels, got ", labels_.size());
  BYOL_CHECK(!labels_.empty() || num_classes == 0, name_, ": num_classes ", num_classes,
             " given without labels");
  for (size_t i = 0; i < labels_.size(); ++i)
    BYOL_CHECK(labels_[i] >= 0 && labels_[i] < num_classes, name_, ": label ", labels_[i], " of image ", i,
               " out of range [0, ", num_classes, ")");
}

int64_t InMemoryDataset::label(int64_t index) const {
  check_index(index);
  return labels_.empty() ? -1 : labels_[index];
}

ImageView InMemoryDataset::image(int64_t index, std::vector<uint8_t>&, const DecodeHint&) const {
  check_index(index);
  const int64_t bytes = int64_t(height_) * width_ * channels_;
  return {pixels_.data() + index * bytes, height_, width_, channels_};
}

std::string InMemoryDataset::describe() const {
  return cat(name_, " (", count_, " images of ", height_, "x", width_, "x", channels_, ", ", num_classes_,
             " classes)");
}

std::string InMemoryDataset::item_name(int64_t index) const {
  return cat(name_, " image ", index);
}

// --- CIFAR ---------------------------------------------------------------------------------------------

std::shared_ptr<Dataset> load_cifar_files(const std::vector<std::string>& files, int label_bytes,
                                          int classes) {
  BYOL_CHECK(!files.empty(), "load_cifar_files: expected at least one file");
  constexpr int64_t kPixels = 32 * 32 * 3;
  const int64_t record = label_bytes + kPixels;
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
  for (const std::string& path : files) {
    const std::vector<uint8_t> bytes = read_file(path);
    BYOL_CHECK(!bytes.empty() && int64_t(bytes.size()) % record == 0, "CIFAR: '", path,
               "': expected a multiple of ", record, " bytes (", label_bytes, " label byte",
               label_bytes > 1 ? "s" : "", " + 3072 pixel bytes per image), got ", bytes.size(), " bytes");
    const int64_t n = int64_t(bytes.size()) / record;
    const size_t base = pixels.size();
    pixels.resize(base + size_t(n) * kPixels);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* r = bytes.data() + i * record;
      const int label = r[label_bytes - 1];  // CIFAR-100: [coarse, fine]; the fine label
      BYOL_CHECK(label < classes, "CIFAR: '", path, "': image ", i, " has label ", label, ", expected < ",
                 classes, " (is this a CIFAR-", classes == 10 ? "100" : "10", " file?)");
      labels.push_back(label);
      uint8_t* d = pixels.data() + base + size_t(i) * kPixels;
      const uint8_t* s = r + label_bytes;  // planes R, G, B of 1024 bytes each -> HWC
      for (int p = 0; p < 1024; ++p)
        for (int c = 0; c < 3; ++c) d[3 * p + c] = s[c * 1024 + p];
    }
  }
  std::vector<std::string> names;
  if (classes == 10)
    names = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
  const int64_t count = int64_t(labels.size());
  std::string name =
      cat("CIFAR-", classes, " '", files.front(), "'", files.size() > 1 ? cat(" +", files.size() - 1) : "");
  return std::make_shared<InMemoryDataset>(std::move(name), std::move(pixels), count, 32, 32, 3,
                                           std::move(labels), classes, std::move(names));
}

std::shared_ptr<Dataset> load_cifar10(const std::string& dir, Split split) {
  BYOL_CHECK(split != Split::unlabeled, "load_cifar10: CIFAR-10 has no unlabeled split");
  std::vector<std::string> files;
  if (split == Split::train) {
    for (int i = 1; i <= 5; ++i) files.push_back((fs::path(dir) / cat("data_batch_", i, ".bin")).string());
  } else {
    files.push_back((fs::path(dir) / "test_batch.bin").string());
  }
  return load_cifar_files(files, 1, 10);
}

std::shared_ptr<Dataset> load_cifar100(const std::string& dir, Split split) {
  BYOL_CHECK(split != Split::unlabeled, "load_cifar100: CIFAR-100 has no unlabeled split");
  return load_cifar_files({(fs::path(dir) / (split == Split::train ? "train.bin" : "test.bin")).string()}, 2,
                          100);
}

// --- STL-10 --------------------------------------------------------------------------------------------

namespace {

class Stl10Dataset : public Dataset {
 public:
  static constexpr int kSide = 96;
  static constexpr int64_t kBytes = kSide * kSide * 3;

  Stl10Dataset(const std::string& x_path, const std::string& y_path) : x_(x_path) {
    BYOL_CHECK(x_.size() > 0 && x_.size() % kBytes == 0, "STL-10: '", x_path, "': expected a multiple of ",
               kBytes, " bytes (96x96x3 per image), got ", x_.size(), " bytes");
    count_ = int64_t(x_.size() / kBytes);
    if (!y_path.empty()) {
      const std::vector<uint8_t> y = read_file(y_path);
      BYOL_CHECK(int64_t(y.size()) == count_, "STL-10: '", y_path, "': expected ", count_,
                 " label bytes (one per image of '", x_path, "'), got ", y.size());
      labels_.resize(y.size());
      for (size_t i = 0; i < y.size(); ++i) {
        BYOL_CHECK(y[i] >= 1 && y[i] <= 10, "STL-10: '", y_path, "': label ", int(y[i]), " of image ", i,
                   ", expected 1..10");
        labels_[i] = y[i] - 1;
      }
    }
  }
  int64_t size() const override { return count_; }
  int num_classes() const override { return labels_.empty() ? 0 : 10; }
  int64_t label(int64_t index) const override {
    check_index(index);
    return labels_.empty() ? -1 : labels_[index];
  }
  ImageView image(int64_t index, std::vector<uint8_t>& scratch, const DecodeHint&) const override {
    check_index(index);
    const uint8_t* s = x_.data() + index * kBytes;  // per channel, column-major: s[c][x][y]
    scratch.resize(kBytes);
    for (int x = 0; x < kSide; ++x)
      for (int c = 0; c < 3; ++c) {
        const uint8_t* col = s + (c * kSide + x) * kSide;
        for (int y = 0; y < kSide; ++y) scratch[(size_t(y) * kSide + x) * 3 + c] = col[y];
      }
    return {scratch.data(), kSide, kSide, 3};
  }
  std::string describe() const override {
    return cat("STL-10 '", x_.path(), "' (", count_, " images, ", num_classes(), " classes)");
  }
  std::string item_name(int64_t index) const override { return cat(x_.path(), " image ", index); }
  std::vector<std::string> class_names() const override {
    if (labels_.empty()) return {};
    return {"airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"};
  }

 private:
  MappedFile x_;
  int64_t count_ = 0;
  std::vector<int64_t> labels_;
};

}  // namespace

std::shared_ptr<Dataset> load_stl10(const std::string& dir, Split split) {
  const fs::path d(dir);
  if (split == Split::unlabeled) return std::make_shared<Stl10Dataset>((d / "unlabeled_X.bin").string(), "");
  const std::string s = split_name(split);
  return std::make_shared<Stl10Dataset>((d / (s + "_X.bin")).string(), (d / (s + "_y.bin")).string());
}

// --- IDX -----------------------------------------------------------------------------------------------

namespace {

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// Checks the magic number (0x0000 08 <dims>: unsigned bytes, `dims` dimensions) and the size; returns the
// dimensions.
std::vector<uint32_t> parse_idx_header(const std::vector<uint8_t>& bytes, int dims, const std::string& path) {
  const uint32_t expected = 0x00000800u | uint32_t(dims);
  const uint32_t magic = bytes.size() >= 4 ? read_be32(bytes.data()) : 0;
  if (bytes.size() < 4 || magic != expected) {
    char got[16], want[16];
    std::snprintf(got, sizeof got, "0x%08x", magic);
    std::snprintf(want, sizeof want, "0x%08x", expected);
    BYOL_FAIL("IDX: '", path, "': expected magic number ", want, " (unsigned bytes, ", dims, " dimension",
              dims > 1 ? "s" : "", "), got ",
              bytes.size() < 4 ? std::string("a file of ") + std::to_string(bytes.size()) + " bytes"
                               : std::string(got));
  }
  const size_t header = 4 + 4 * size_t(dims);
  BYOL_CHECK(bytes.size() >= header, "IDX: '", path, "': truncated header (", bytes.size(), " bytes)");
  std::vector<uint32_t> shape;
  std::string shape_text;
  for (int i = 0; i < dims; ++i) {
    shape.push_back(read_be32(bytes.data() + 4 + 4 * i));
    shape_text += (i ? " x " : "") + std::to_string(shape.back());
  }
  // The product in 64 bits, checked for wrapping: 2^31 x 2^31 x 4 must not pass for an empty file.
  uint64_t n = 1;
  bool wraps = false;
  for (uint32_t d : shape) wraps = __builtin_mul_overflow(n, uint64_t(d), &n) || wraps;
  if (std::find(shape.begin(), shape.end(), 0u) != shape.end()) n = 0, wraps = false;
  wraps = wraps || n > std::numeric_limits<uint64_t>::max() - header;
  BYOL_CHECK(!wraps, "IDX: '", path, "': the header's shape ", shape_text,
             " needs more than 2^64 bytes (the file has ", bytes.size(), ")");
  BYOL_CHECK(bytes.size() == header + n, "IDX: '", path, "': expected ", header + n,
             " bytes for its header's shape ", shape_text, ", got ", bytes.size());
  return shape;
}

}  // namespace

std::shared_ptr<Dataset> load_idx(const std::string& images_path, const std::string& labels_path,
                                  int num_classes) {
  std::vector<uint8_t> images = read_file_maybe_gz(images_path);
  const std::vector<uint32_t> shape = parse_idx_header(images, 3, images_path);
  constexpr uint32_t kIntMax = uint32_t(std::numeric_limits<int>::max());
  BYOL_CHECK(shape[1] >= 1 && shape[2] >= 1 && shape[1] <= kIntMax && shape[2] <= kIntMax, "IDX: '",
             images_path, "': the header's images have ", shape[1], " rows and ", shape[2],
             " columns, expected 1..", kIntMax, " of each");
  std::vector<int64_t> labels;
  if (!labels_path.empty()) {
    const std::vector<uint8_t> lb = read_file_maybe_gz(labels_path);
    const std::vector<uint32_t> lshape = parse_idx_header(lb, 1, labels_path);
    BYOL_CHECK(lshape[0] == shape[0], "IDX: '", labels_path, "': expected ", shape[0],
               " labels (one per image of '", images_path, "'), got ", lshape[0]);
    for (uint32_t i = 0; i < lshape[0]; ++i) {
      BYOL_CHECK(lb[8 + i] < num_classes, "IDX: '", labels_path, "': label ", int(lb[8 + i]), " of image ", i,
                 ", expected < ", num_classes);
      labels.push_back(lb[8 + i]);
    }
  }
  images.erase(images.begin(), images.begin() + 16);
  return std::make_shared<InMemoryDataset>(cat("IDX '", images_path, "'"), std::move(images), shape[0],
                                           int(shape[1]), int(shape[2]), 1, std::move(labels),
                                           labels_path.empty() ? 0 : num_classes);
}

std::shared_ptr<Dataset> load_fashion_mnist(const std::string& dir, Split split) {
  BYOL_CHECK(split != Split::unlabeled, "load_fashion_mnist: Fashion-MNIST has no unlabeled split");
  const std::string stem = split == Split::train ? "train" : "t10k";
  auto find = [&](const std::string& name) {
    const fs::path p = fs::path(dir) / name;
    if (fs::exists(p.string() + ".gz")) return p.string() + ".gz";
    if (fs::exists(p)) return p.string();
    BYOL_FAIL("load_fashion_mnist: neither '", p.string(), ".gz' nor '", p.string(),
              "' exists (install Debian's dataset-fashion-mnist, or pass the folder holding the IDX files)");
  };
  const std::string images = find(stem + "-images-idx3-ubyte");
  const std::string labels = find(stem + "-labels-idx1-ubyte");
  return load_idx(images, labels, 10);
}

// --- synthetic -----------------------------------------------------------------------------------------

SyntheticDataset::SyntheticDataset(int64_t count, int classes, int side, uint64_t seed)
    : count_(count), classes_(classes), side_(side), seed_(seed) {
  BYOL_CHECK(count > 0 && classes > 0 && side >= 4,
             "SyntheticDataset: expected count > 0, classes > 0, side >= 4, ", "got ", count, ", ", classes,
             ", ", side);
}

int64_t SyntheticDataset::label(int64_t index) const {
  check_index(index);
  return index % classes_;
}

namespace {

void hue_to_rgb(double h, double s, double v, double rgb[3]) {
  h = (h - std::floor(h)) * 6.0;
  const int sector = static_cast<int>(h) % 6;
  const double f = h - std::floor(h), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  const double table[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
  for (int c = 0; c < 3; ++c) rgb[c] = table[sector][c];
}

}  // namespace

ImageView SyntheticDataset::image(int64_t index, std::vector<uint8_t>& scratch, const DecodeHint&) const {
  check_index(index);
  const int k = static_cast<int>(index % classes_);
  const int shape = k % 4, texture = (k / 4) % 3;
  const double band = (k / 12) * 0.618034;
  std::mt19937_64 gen(mix_seed(seed_, static_cast<uint64_t>(index)));
  auto u = [&](double lo, double hi) { return lo + (hi - lo) * uniform01(gen); };
  const int s = side_;
  double bg0[3], bg1[3], fg[3];
  hue_to_rgb(u(0, 1), u(0.1, 0.4), u(0.3, 0.9), bg0);
  hue_to_rgb(u(0, 1), u(0.1, 0.4), u(0.3, 0.9), bg1);
  hue_to_rgb(band + u(-0.08, 0.08), u(0.5, 1.0), u(0.6, 1.0), fg);
  const double cx = u(0.35, 0.65) * s, cy = u(0.35, 0.65) * s, r = u(0.2, 0.33) * s;
  const double period = std::max(2.0, s / u(5.0, 8.0));
  scratch.resize(size_t(s) * s * 3);
  for (int y = 0; y < s; ++y)
    for (int x = 0; x < s; ++x) {
      const double dx = x + 0.5 - cx, dy = y + 0.5 - cy, d = std::sqrt(dx * dx + dy * dy);
      bool inside = false;
      switch (shape) {
        case 0:
          inside = d < r;
          break;
        case 1:
          inside = std::fabs(dx) < 0.85 * r && std::fabs(dy) < 0.85 * r;
          break;
        case 2:
          inside = dy > -r && dy < r && std::fabs(dx) < (dy + r) / 2;
          break;
        default:
          inside = d < r && d > 0.55 * r;
          break;
      }
      double shade = 1.0;
      if (texture == 1 && static_cast<int>(std::floor((x + y) / period)) % 2) shade = 0.45;
      if (texture == 2 &&
          (static_cast<int>(std::floor(x / period)) + static_cast<int>(std::floor(y / period))) % 2)
        shade = 0.45;
      const double t = double(y) / s;
      const double noise = u(-0.04, 0.04);
      for (int c = 0; c < 3; ++c) {
        const double v = inside ? fg[c] * shade : bg0[c] * (1 - t) + bg1[c] * t;
        scratch[(size_t(y) * s + x) * 3 + c] =
            static_cast<uint8_t>(std::clamp(v + noise, 0.0, 1.0) * 255.0 + 0.5);
      }
    }
  return {scratch.data(), s, s, 3};
}

std::string SyntheticDataset::describe() const {
  return cat("synthetic dataset (", count_, " images of ", side_, "x", side_, ", ", classes_,
             " classes, seed ", seed_, ")");
}

// --- subsets and splits --------------------------------------------------------------------------------

Subset::Subset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  BYOL_CHECK(base_ != nullptr, "Subset: expected a dataset, got null");
  for (int64_t i : indices_)
    BYOL_CHECK(i >= 0 && i < base_->size(), "Subset: index ", i, " out of range for ", base_->describe());
}

int64_t Subset::label(int64_t index) const {
  check_index(index);
  return base_->label(indices_[index]);
}

ImageView Subset::image(int64_t index, std::vector<uint8_t>& scratch, const DecodeHint& hint) const {
  check_index(index);
  return base_->image(indices_[index], scratch, hint);
}

std::string Subset::describe() const {
  return cat("subset of ", indices_.size(), " of ", base_->describe());
}

std::string Subset::item_name(int64_t index) const {
  check_index(index);
  return base_->item_name(indices_[index]);
}

SplitIndices split_indices(int64_t n, double val_fraction, uint64_t seed) {
  BYOL_CHECK(val_fraction >= 0 && val_fraction <= 1, "split_indices: val_fraction expected in [0, 1], got ",
             val_fraction);
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 gen(mix_seed(seed, 0x73706c6974ull));
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(uniform01(gen) * double(i + 1));
    std::swap(order[i], order[std::min(j, i)]);
  }
  const int64_t n_val = static_cast<int64_t>(std::llround(double(n) * val_fraction));
  SplitIndices s;
  s.val.assign(order.begin(), order.begin() + n_val);
  s.train.assign(order.begin() + n_val, order.end());
  std::sort(s.val.begin(), s.val.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

}  // namespace byol::data
