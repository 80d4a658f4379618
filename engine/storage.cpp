#include "engine/storage.h"

#include <malloc.h>

#include <cstdlib>
#include <new>

#include "engine/device_memory.h"

namespace byol {

namespace {
// Training allocates and frees the same large activation buffers every step. By default glibc serves
// blocks above its mmap threshold with fresh mappings and trims the heap eagerly, so every step pays
// for the kernel zeroing new pages. Keeping blocks up to 32 MB (glibc's maximum threshold) on the heap
// and never trimming it makes freed buffers reusable.
const bool g_malloc_tuned = [] {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  return true;
}();
}  // namespace

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
