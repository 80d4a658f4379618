#include "apps/tensorboard.h"

#include <array>
#include <cerrno>
#include <cstring>

#include "engine/common.h"

namespace byol::apps {

namespace {
constexpr std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0u);
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = crc32c_table();

uint32_t masked_crc(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// Protobuf wire format: varints, field keys, fixed-width little-endian numbers, length-delimited bytes.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };
void key(std::string& out, uint32_t field, Wire wire) {
  varint(out, (field << 3) | wire);
}
template <typename T>
void little_endian(std::string& out, T value) {
  char b[sizeof(T)];
  std::memcpy(b, &value, sizeof(T));  // x86-64 and aarch64 Linux are little-endian
  out.append(b, sizeof(T));
}
void bytes_field(std::string& out, uint32_t field, const std::string& bytes) {
  key(out, field, kBytes);
  varint(out, bytes.size());
  out += bytes;
}
// Event fields 1 (wall_time) and 2 (step).
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  key(e, 1, kFixed64);
  little_endian(e, wall_time);
  key(e, 2, kVarint);
  varint(e, static_cast<uint64_t>(step));
  return e;
}
}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = kCrcTable[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

EventFile::EventFile(std::string path, double wall_time) : path_(std::move(path)) {
  file_ = std::fopen(path_.c_str(), "wb");
  BYOL_CHECK(file_ != nullptr, path_, ": cannot create the TensorBoard event file (", std::strerror(errno),
             ")");
  std::string e = event_head(wall_time, 0);
  bytes_field(e, 3, "brain.Event:2");
  record(e);
  flush();
}

EventFile::~EventFile() {
  if (file_) std::fclose(file_);
}

void EventFile::scalars(int64_t step, double wall_time,
                        const std::vector<std::pair<std::string, float>>& values) {
  if (values.empty()) return;
  std::string summary;
  for (const auto& [tag, value] : values) {
    std::string v;
    bytes_field(v, 1, tag);
    key(v, 2, kFixed32);
    little_endian(v, value);
    bytes_field(summary, 1, v);
  }
  std::string e = event_head(wall_time, step);
  bytes_field(e, 5, summary);
  record(e);
}

void EventFile::flush() {
  BYOL_CHECK(std::fflush(file_) == 0, path_, ": writing the TensorBoard event file failed (",
             std::strerror(errno), ")");
}

void EventFile::record(const std::string& data) {
  std::string r;
  const uint64_t length = data.size();
  little_endian(r, length);
  little_endian(r, masked_crc(&length, sizeof length));
  r += data;
  little_endian(r, masked_crc(data.data(), data.size()));
  BYOL_CHECK(std::fwrite(r.data(), 1, r.size(), file_) == r.size(), path_,
             ": writing the TensorBoard event file failed (", std::strerror(errno), ")");
}

}  // namespace byol::apps
