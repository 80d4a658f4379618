// A read-only memory-mapped file (RAII, move-only). Packed shards and STL-10's unlabeled split (2.7 GB)
// are read through it, so the page cache holds the data once however many workers read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace byol::data {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws a byol::Error naming the path
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace byol::data
