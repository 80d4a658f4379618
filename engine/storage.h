// Storage: one allocation on one device, shared by every tensor that views it.
//
// CPU memory is 64-byte aligned (a cache line, and a full AVX-512 vector) so Eigen maps and vector
// loads on the start of a buffer are aligned. CUDA memory comes from engine/device_memory.h, which is
// implemented by the CUDA backend or, in a CPU-only build, throws an error that says CUDA is absent.
#pragma once

#include <cstddef>
#include <memory>

#include "engine/dtype.h"

namespace byol {

class Storage {
 public:
  static constexpr size_t kCpuAlignment = 64;

  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

}  // namespace byol
