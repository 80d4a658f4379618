// Device memory for CUDA tensors: stream-ordered allocation on the backend's compute stream from the
// device's default memory pool, which is told to retain freed memory (release threshold = max) so
// steady-state training allocates nothing from the driver. Allocation, freeing, device-to-device copies
// and memsets are ordered on the compute stream and never wait for the GPU; copies to and from the host
// are synchronous (cudaMemcpy on the legacy stream, which the blocking compute stream is ordered with),
// because the host buffer may be reused as soon as they return.
#include <cstdint>
#include <mutex>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/device_memory.h"
#include "kernels/elementwise.cuh"

namespace byol {
namespace {

struct DeviceGuard {
  int previous = 0;
  explicit DeviceGuard(int device) {
    BYOL_CUDA_CHECK(cudaGetDevice(&previous));
    if (previous != device) BYOL_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous); }
};

void retain_pool(int device) {
  static bool done[64] = {};
  if (device < 0 || device >= 64 || done[device]) return;
  cudaMemPool_t pool;
  BYOL_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  uint64_t threshold = UINT64_MAX;
  BYOL_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  done[device] = true;
}

}  // namespace

bool cuda_compiled() {
  return true;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void cuda_set_device(int device) {
  const int n = cuda_device_count();
  BYOL_CHECK(device >= 0 && device < n, "cuda_set_device(", device, "): ", n, " CUDA device(s) are visible");
  BYOL_CUDA_CHECK(cudaSetDevice(device));
}

void* cuda_alloc(size_t bytes, int device) {
  int n = cuda_device_count();
  BYOL_CHECK(device >= 0 && device < n, "CUDA tensor on device ", device, " requested, but ", n,
             " CUDA device(s) are visible");
  DeviceGuard guard(device);
  retain_pool(device);
  void* ptr = nullptr;
  BYOL_CUDA_CHECK(cudaMallocAsync(&ptr, bytes, cuda::compute_stream()));
  return ptr;
}

void cuda_free(void* ptr, int device) noexcept {
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device);
  try {
    cudaFreeAsync(ptr, cuda::compute_stream());
  } catch (...) {  // the stream could not be created: the pointer cannot have come from it either
  }
  cudaSetDevice(previous);
}

void cuda_copy_to_device(void* dst, const void* src, size_t bytes, int device) {
  DeviceGuard guard(device);
  BYOL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void cuda_copy_to_host(void* dst, const void* src, size_t bytes, int device) {
  DeviceGuard guard(device);
  BYOL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void cuda_copy_device_to_device(void* dst, const void* src, size_t bytes, int device) {
  DeviceGuard guard(device);
  BYOL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda::compute_stream()));
}

void cuda_memset_zero(void* dst, size_t bytes, int device) {
  DeviceGuard guard(device);
  BYOL_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, cuda::compute_stream()));
}

namespace {
// A device-resident 1.0 per device and precision, uploaded once (the only wait, on first use), so a fill
// is kernels::fill_from_scalar(dst, one, value): stream-ordered and without a host copy.
template <class T>
const T* device_one(int device) {
  constexpr int kMaxDevices = 64;
  static T* ones[kMaxDevices] = {};
  static std::mutex mu;
  BYOL_CHECK(device >= 0 && device < kMaxDevices, "cuda_fill: device ", device, " out of range");
  std::lock_guard<std::mutex> lock(mu);
  if (ones[device] == nullptr) {
    const T one = T(1);
    T* p = nullptr;
    BYOL_CUDA_CHECK(cudaMalloc(&p, sizeof(T)));
    BYOL_CUDA_CHECK(cudaMemcpy(p, &one, sizeof(T), cudaMemcpyHostToDevice));
    ones[device] = p;
  }
  return ones[device];
}
}  // namespace

void cuda_fill_floating(void* dst, bool double_precision, double value, int64_t n, int device) {
  DeviceGuard guard(device);
  if (n == 0) return;
  if (double_precision) {
    kernels::fill_from_scalar(static_cast<double*>(dst), device_one<double>(device), value, n,
                              cuda::compute_stream());
  } else {
    kernels::fill_from_scalar(static_cast<float*>(dst), device_one<float>(device), value, n,
                              cuda::compute_stream());
  }
}

}  // namespace byol
