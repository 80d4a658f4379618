#include "data/packed.h"

#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include "engine/common.h"

namespace byol::data {

static_assert(std::endian::native == std::endian::little,
              "the packed format is read and written little-endian");

namespace {

constexpr char kMagic[8] = {'B', 'Y', 'O', 'L', 'P', 'A', 'K', '1'};
constexpr uint32_t kVersion = 1;

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

}  // namespace

PackWriter::PackWriter(std::string prefix, std::vector<std::string> class_names, int64_t shard_bytes)
    : prefix_(std::move(prefix)), class_names_(std::move(class_names)), shard_bytes_(shard_bytes) {
  BYOL_CHECK(shard_bytes > 0, "PackWriter: shard_bytes expected > 0, got ", shard_bytes);
  open_shard();
}

PackWriter::~PackWriter() {
  if (shard_) std::fclose(shard_);
  if (!finished_) {
    std::error_code ec;
    for (uint32_t s = 0; s <= shard_index_; ++s) std::filesystem::remove(shard_path(s, true), ec);
  }
}

std::string PackWriter::shard_path(uint32_t shard, bool temporary) const {
  char name[32];
  std::snprintf(name, sizeof name, "-%05u.bin", shard);
  return prefix_ + name + (temporary ? ".tmp" : "");
}

void PackWriter::open_shard() {
  const std::string path = shard_path(shard_index_, true);
  shard_ = std::fopen(path.c_str(), "wb");
  if (!shard_) BYOL_FAIL("PackWriter: cannot create '", path, "': ", std::strerror(errno));
  shard_offset_ = 0;
}

void PackWriter::add(const ImageView& image, int64_t label) {
  BYOL_CHECK(!finished_, "PackWriter: add() after finish() for '", prefix_, "'");
  BYOL_CHECK(image.channels == 1 || image.channels == 3, "PackWriter: expected 1 or 3 channels, got ",
             image.channels);
  BYOL_CHECK(label >= -1 && label < int64_t(class_names_.size()) && (label >= 0) == !class_names_.empty(),
             "PackWriter: label ", label, " expected in [0, ", class_names_.size(), ")",
             class_names_.empty() ? " (this pack is unlabeled: expected -1)" : "");
  const uint64_t bytes = uint64_t(image.bytes());
  if (shard_offset_ > 0 && shard_offset_ + bytes > uint64_t(shard_bytes_)) {
    if (std::fclose(shard_) != 0)
      BYOL_FAIL("PackWriter: error closing '", shard_path(shard_index_, true), "'");
    shard_ = nullptr;
    ++shard_index_;
    open_shard();
  }
  if (std::fwrite(image.data, 1, bytes, shard_) != bytes)
    BYOL_FAIL("PackWriter: error writing '", shard_path(shard_index_, true), "': ", std::strerror(errno));
  records_.push_back({shard_index_, uint32_t(image.height), uint32_t(image.width), uint32_t(image.channels),
                      shard_offset_, label});
  shard_offset_ += bytes;
}

void PackWriter::finish() {
  BYOL_CHECK(!finished_, "PackWriter: finish() called twice for '", prefix_, "'");
  if (std::fclose(shard_) != 0) BYOL_FAIL("PackWriter: error closing '", shard_path(shard_index_, true), "'");
  shard_ = nullptr;
  std::vector<uint8_t> index(kMagic, kMagic + 8);
  put<uint32_t>(index, kVersion);
  put<uint32_t>(index, shard_index_ + 1);
  put<uint64_t>(index, records_.size());
  put<uint32_t>(index, uint32_t(class_names_.size()));
  put<uint32_t>(index, 0);
  for (const std::string& n : class_names_) {
    put<uint32_t>(index, uint32_t(n.size()));
    index.insert(index.end(), n.begin(), n.end());
  }
  for (const Record& r : records_) {
    put(index, r.shard), put(index, r.height), put(index, r.width), put(index, r.channels);
    put(index, r.offset), put(index, r.label);
  }
  for (uint32_t s = 0; s <= shard_index_; ++s)
    std::filesystem::rename(shard_path(s, true), shard_path(s, false));
  const std::string tmp = prefix_ + ".index.tmp";
  write_file(tmp, index.data(), index.size());
  std::filesystem::rename(tmp, prefix_ + ".index");
  finished_ = true;
  // Shards of an earlier, larger pack under the same prefix (byol-pack --force) belong to no index now.
  std::error_code ec;
  for (uint32_t s = shard_index_ + 1; std::filesystem::exists(shard_path(s, false), ec); ++s)
    std::filesystem::remove(shard_path(s, false), ec);
}

PackedDataset::PackedDataset(const std::string& prefix) : prefix_(prefix) {
  const std::string path = prefix + ".index";
  const std::vector<uint8_t> index = read_file(path);
  size_t pos = 0;
  auto take = [&](void* dst, size_t n) {
    BYOL_CHECK(pos + n <= index.size(), "PackedDataset: '", path, "' is truncated (expected more than ",
               index.size(), " bytes)");
    std::memcpy(dst, index.data() + pos, n);
    pos += n;
  };
  char magic[8];
  take(magic, 8);
  BYOL_CHECK(std::memcmp(magic, kMagic, 8) == 0, "PackedDataset: '", path,
             "' is not a byol-pack index (expected it to start with \"BYOLPAK1\")");
  uint32_t version = 0, shards = 0, classes = 0, reserved = 0;
  uint64_t count = 0;
  take(&version, 4);
  BYOL_CHECK(version == kVersion, "PackedDataset: '", path, "': expected version ", kVersion, ", got ",
             version);
  take(&shards, 4);
  take(&count, 8);
  take(&classes, 4);
  take(&reserved, 4);
  // Every count and length below is bounded by the bytes the index really holds before anything is
  // allocated for it, so a forged field is an error, not a 4 GB allocation or a product that wraps.
  BYOL_CHECK(classes <= (index.size() - pos) / 4, "PackedDataset: '", path, "': field 'classes' is ", classes,
             ", more class names than the index's ", index.size(), " bytes can hold");
  for (uint32_t c = 0; c < classes; ++c) {
    uint32_t n = 0;
    take(&n, 4);
    BYOL_CHECK(n <= index.size() - pos, "PackedDataset: '", path, "': class ", c, " has a name of ", n,
               " bytes, longer than the ", index.size() - pos, " bytes left in the index");
    std::string name(n, '\0');
    take(name.data(), n);
    class_names_.push_back(std::move(name));
  }
  const size_t left = index.size() - pos;
  BYOL_CHECK(count <= left / 32 && left == count * 32, "PackedDataset: '", path, "': field 'count' is ",
             count, ", expected as many records of 32 bytes as follow the header (", left, " bytes)");
  records_.resize(count);
  for (Record& r : records_) {
    take(&r.shard, 4), take(&r.height, 4), take(&r.width, 4), take(&r.channels, 4);
    take(&r.offset, 8), take(&r.label, 8);
  }
  for (uint32_t s = 0; s < shards; ++s) {
    char name[32];
    std::snprintf(name, sizeof name, "-%05u.bin", s);
    shards_.emplace_back(prefix + name);
  }
  constexpr uint32_t kIntMax = uint32_t(std::numeric_limits<int>::max());
  for (size_t i = 0; i < records_.size(); ++i) {
    const Record& r = records_[i];
    BYOL_CHECK(r.shard < shards, "PackedDataset: '", path, "': record ", i, " has field 'shard' ", r.shard,
               ", expected < ", shards);
    BYOL_CHECK(r.channels == 1 || r.channels == 3, "PackedDataset: '", path, "': record ", i,
               " has field 'channels' ", r.channels, ", expected 1 or 3");
    BYOL_CHECK(r.height >= 1 && r.width >= 1 && r.height <= kIntMax && r.width <= kIntMax, "PackedDataset: '",
               path, "': record ", i, " has fields 'height' x 'width' ", r.height, "x", r.width,
               ", expected 1..", kIntMax, " each");
    // height, width <= 2^31 and channels <= 3: the product stays below 2^64; offset + bytes could wrap, so
    // the offset is compared with what is left of the shard after the image.
    const uint64_t bytes = uint64_t(r.height) * r.width * r.channels, shard_size = shards_[r.shard].size();
    BYOL_CHECK(bytes <= shard_size && r.offset <= shard_size - bytes, "PackedDataset: '",
               shards_[r.shard].path(), "' is truncated or '", path, "' is corrupt: record ", i,
               " (field 'offset' ", r.offset, ", ", r.height, "x", r.width, "x", r.channels, " = ", bytes,
               " bytes) lies beyond the shard's ", shard_size, " bytes");
    BYOL_CHECK(classes == 0 ? r.label == -1 : (r.label >= 0 && r.label < int64_t(classes)),
               "PackedDataset: '", path, "': record ", i, " has label ", r.label, ", expected ",
               classes == 0 ? "-1" : "a class index");
  }
}

int64_t PackedDataset::label(int64_t index) const {
  check_index(index);
  return records_[index].label;
}

ImageView PackedDataset::image(int64_t index, std::vector<uint8_t>&, const DecodeHint&) const {
  check_index(index);
  const Record& r = records_[index];
  return {shards_[r.shard].data() + r.offset, int(r.height), int(r.width), int(r.channels)};
}

std::string PackedDataset::describe() const {
  return cat("packed dataset '", prefix_, "' (", records_.size(), " images, ", class_names_.size(),
             " classes)");
}

std::string PackedDataset::item_name(int64_t index) const {
  check_index(index);
  return cat(prefix_, " image ", index);
}

}  // namespace byol::data
