#include "engine/storage.h"

#include <cstdlib>
#include <new>

#include "engine/device_memory.h"

namespace byol {

Storage::Storage(size_t bytes, Device device) : bytes_(bytes), device_(device) {
  if (device.is_cpu()) {
    size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    if (rounded == 0) rounded = kCpuAlignment;
    data_ = std::aligned_alloc(kCpuAlignment, rounded);
    if (!data_) throw Error(cat("out of host memory allocating ", bytes, " bytes"));
  } else {
    data_ = cuda_alloc(bytes == 0 ? 1 : bytes, device.index);
  }
}

Storage::~Storage() {
  if (device_.is_cpu()) {
    std::free(data_);
  } else if (data_) {
    cuda_free(data_, device_.index);
  }
}

}  // namespace byol
