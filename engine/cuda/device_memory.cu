// Device memory for CUDA tensors: stream-ordered allocation on the backend's compute stream from the
// device's default memory pool, which is told to retain freed memory (release threshold = max) so
// steady-state training allocates nothing from the driver. A device without memory pools
// (cudaDevAttrMemoryPoolsSupported = 0: some virtualised GPUs, old drivers, MPS set-ups) gets plain
// cudaMalloc / cudaFree instead, with one warning: correct, but every free waits for the device. Allocation,
// freeing, device-to-device copies and memsets are ordered on the compute stream and never wait for the GPU;
// copies to and from the host are synchronous (cudaMemcpy on the legacy stream, which the blocking compute
// stream is ordered with), because the host buffer may be reused as soon as they return.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#include "engine/cuda/elementwise.cuh"
#include "engine/device_memory.h"

namespace byol {
namespace {

using cuda::DeviceGuard;

constexpr int kMaxDevices = 64;

// Per device: 0 = not yet asked, 1 = stream-ordered pool (retained), 2 = no pools (cudaMalloc).
std::atomic<int> g_pool_mode[kMaxDevices];

// Whether `device` allocates from its stream-ordered pool; the first call asks the device and, with
// pools, sets the default pool's release threshold to retain freed memory.
bool uses_pool(int device) {
  BYOL_CHECK(device >= 0 && device < kMaxDevices, "CUDA device index ", device, " is out of range");
  const int mode = g_pool_mode[device].load();
  if (mode != 0) return mode == 1;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (g_pool_mode[device].load() != 0) return g_pool_mode[device].load() == 1;
  int supported = 0;
  BYOL_CUDA_CHECK(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device));
  if (supported) {
    cudaMemPool_t pool;
    BYOL_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    uint64_t threshold = UINT64_MAX;
    BYOL_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  } else {
    std::fprintf(stderr,
                 "warning: CUDA device %d does not support stream-ordered memory pools "
                 "(cudaDevAttrMemoryPoolsSupported = 0); using cudaMalloc/cudaFree, which synchronise\n",
                 device);
  }
  g_pool_mode[device].store(supported ? 1 : 2);
  return supported != 0;
}

std::mutex g_guard_mu;
std::function<void(int)> g_host_read_guard;

// CudaGraph's capture bookkeeping (cuda::begin_capture_tracking). While a capture runs, an allocation is a
// node of the graph: the graph owns it and frees it when the captured code frees it. Memory allocated
// before the capture cannot be freed by a graph node, and the graph may use it on every replay: its frees
// are handed to the CudaGraph, which releases them when the graph is destroyed. Pointers the graph allocated
// that were still held when it was destroyed unlaunched are never freed (`orphans`, until their address is
// handed out again).
struct CaptureTracking {
  std::mutex mu;
  int device = -1;  // -1: no capture
  std::unordered_map<void*, size_t> made;
  std::vector<void*> deferred;
  int64_t failed_frees = 0;
  std::unordered_set<void*> orphans;
  // A capture runs or orphans exist: only then do allocations and frees take the lock (set under it).
  std::atomic<bool> engaged{false};
  void update_engaged() { engaged.store(device != -1 || !orphans.empty(), std::memory_order_release); }
};

CaptureTracking& tracking() {
  static CaptureTracking* t =
      new CaptureTracking();  // leaked: tensors may be freed during static destruction
  return *t;
}

}  // namespace

namespace cuda {

void* device_alloc(size_t bytes, int device) {
  DeviceGuard guard(device);
  void* ptr = nullptr;
  if (uses_pool(device)) {
    BYOL_CUDA_CHECK(cudaMallocAsync(&ptr, bytes, compute_stream()));
  } else {
    BYOL_CUDA_CHECK(cudaMalloc(&ptr, bytes));
  }
  CaptureTracking& t = tracking();
  if (!t.engaged.load(std::memory_order_acquire)) return ptr;
  std::lock_guard<std::mutex> lock(t.mu);
  t.orphans.erase(ptr);  // the address is live again
  if (t.device == device) t.made[ptr] = bytes;
  t.update_engaged();
  return ptr;
}

void device_free(void* ptr, int device) noexcept {
  if (ptr == nullptr) return;
  if (CaptureTracking& t = tracking(); t.engaged.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(t.mu);
    if (t.device == device && t.made.erase(ptr) > 0) {
      // Allocated during the capture: the free is a node of the graph, on the capturing device's stream. A
      // capture that has already failed refuses it (clear that error, or the next launch check would report
      // it); a capture still running that refuses it would leave the graph an allocation without a free:
      // counted, and capture() throws.
      try {
        DeviceGuard guard(device);
        const cudaStream_t stream = compute_stream();
        if (cudaFreeAsync(ptr, stream) != cudaSuccess) {
          cudaGetLastError();
          cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
          if (cudaStreamIsCapturing(stream, &status) == cudaSuccess &&
              status == cudaStreamCaptureStatusActive)
            ++t.failed_frees;
        }
      } catch (...) {
        ++t.failed_frees;
      }
      return;
    }
    if (t.orphans.erase(ptr) > 0) {  // a destroyed, never launched graph's allocation: nothing to free
      t.update_engaged();
      return;
    }
    if (t.device == device) {
      t.deferred.push_back(ptr);  // allocated before the capture: released with the graph
      return;
    }
  }
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) return;  // no usable runtime left (process exit)
  if (previous != device) cudaSetDevice(device);
  try {
    // On this device's stream, not the caller's current one. A failure here is a bug elsewhere (a pointer
    // freed twice); say so, and clear it, or the next launch check would report it as its own.
    const cudaError_t freed = uses_pool(device) ? cudaFreeAsync(ptr, compute_stream()) : cudaFree(ptr);
    if (freed != cudaSuccess) {
      cudaGetLastError();
      std::fprintf(stderr, "warning: freeing device memory %p on cuda:%d failed: %s\n", ptr, device,
                   cudaGetErrorString(freed));
    }
  } catch (...) {  // the stream could not be created: the pointer cannot have come from it either
  }
  if (previous != device) cudaSetDevice(previous);
}

bool uses_memory_pool(int device) {
  DeviceGuard guard(device);
  return uses_pool(device);
}

void begin_capture_tracking(int device) {
  CaptureTracking& t = tracking();
  std::lock_guard<std::mutex> lock(t.mu);
  BYOL_CHECK(t.device == -1, "CUDA graph: a capture on device ", t.device, " is already running");
  t.device = device;
  t.update_engaged();
  t.made.clear();
  t.deferred.clear();
  t.failed_frees = 0;
}

CaptureRecord end_capture_tracking() {
  CaptureRecord r;
  CaptureTracking& t = tracking();
  std::lock_guard<std::mutex> lock(t.mu);
  r.device = t.device;
  t.device = -1;
  r.deferred.swap(t.deferred);
  r.failed_frees = t.failed_frees;
  for (const auto& [ptr, bytes] : t.made) {
    ++r.leaked;
    r.leaked_bytes += bytes;
    t.orphans.insert(ptr);
  }
  t.made.clear();
  t.update_engaged();
  return r;
}

void release_deferred(const CaptureRecord& r) {
  for (void* p : r.deferred) device_free(p, r.device);
}

void set_host_read_guard(std::function<void(int)> guard) {
  std::lock_guard<std::mutex> lock(g_guard_mu);
  g_host_read_guard = std::move(guard);
}

void wait_for_collectives(int device) {
  std::function<void(int)> guard;
  {
    std::lock_guard<std::mutex> lock(g_guard_mu);
    guard = g_host_read_guard;
  }
  if (!guard) return;
  DeviceGuard scope(device);
  guard(device);
}

}  // namespace cuda

bool cuda_compiled() {
  return true;
}

bool cuda_tf32() {
  return cuda::allow_tf32();
}

void cuda_set_tf32(bool on) {
  cuda::set_allow_tf32(on);
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
  return cuda::device_alloc(bytes, device);
}

void cuda_free(void* ptr, int device) noexcept {
  cuda::device_free(ptr, device);
}

void cuda_copy_to_device(void* dst, const void* src, size_t bytes, int device) {
  DeviceGuard guard(device);
  BYOL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void cuda_copy_to_host(void* dst, const void* src, size_t bytes, int device) {
  DeviceGuard guard(device);
  cuda::wait_for_collectives(device);  // throws, rather than hang, on a dead rank
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

namespace cuda {
void create_fill_constants(int device) {
  DeviceGuard guard(device);
  device_one<float>(device);
  device_one<double>(device);
}
}  // namespace cuda

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
