// Device memory for CUDA tensors: stream-ordered allocation from the device's default memory pool,
// which is told to retain freed memory (release threshold = max) so steady-state training allocates
// nothing from the driver. Copies here are synchronous; the training step's asynchronous copies use the
// backend's own streams.
#include <cstdint>

#include "engine/cuda/cuda_check.h"
#include "engine/device_memory.h"

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

void* cuda_alloc(size_t bytes, int device) {
  int n = cuda_device_count();
  BYOL_CHECK(device >= 0 && device < n, "CUDA tensor on device ", device, " requested, but ", n,
             " CUDA device(s) are visible");
  DeviceGuard guard(device);
  retain_pool(device);
  void* ptr = nullptr;
  BYOL_CUDA_CHECK(cudaMallocAsync(&ptr, bytes, 0));
  BYOL_CUDA_CHECK(cudaStreamSynchronize(0));
  return ptr;
}

void cuda_free(void* ptr, int device) noexcept {
  int previous = 0;
  cudaGetDevice(&previous);
  cudaSetDevice(device);
  cudaFreeAsync(ptr, 0);
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
  BYOL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

void cuda_memset_zero(void* dst, size_t bytes, int device) {
  DeviceGuard guard(device);
  BYOL_CUDA_CHECK(cudaMemset(dst, 0, bytes));
}

}  // namespace byol
