// The CUDA backend's per-process state: the device's compute stream (every kernel, cuDNN and cuBLAS
// call and every stream-ordered allocation runs on it, so the whole step is one ordered sequence and
// needs no host synchronisation), a copy stream for host-to-device batches from pinned memory, the
// library handles bound to the compute stream, and the TF32 switch.
//
// Conventions:
//  - Streams and handles are created on first use for the current device and live until the process
//    ends (never destroyed: tensors freed during static destruction may still need the stream).
//  - The compute stream is a blocking stream, so the legacy default stream (synchronous cudaMemcpy
//    in Tensor::copy_) is ordered with it in both directions.
//  - DeviceBuffer is the RAII owner of raw, stream-ordered scratch memory (workspaces, partial sums):
//    move-only, so a buffer is never freed twice or copied by accident. It remembers its device and
//    frees on that device's compute stream, whichever device is current when it dies.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace byol::cuda {

int current_device();
cudaStream_t compute_stream();  // of the current device
cudaStream_t copy_stream();
cublasHandle_t cublas_handle();      // bound to compute_stream()
cublasLtHandle_t cublaslt_handle();  // cuBLASLt takes the stream per call

// TF32 tensor-core math for float32 convolutions (cuDNN math type) and GEMMs (cuBLAS compute type): on
// by default; the [cuda] tests that compare against a float64-accurate reference turn it off.
bool allow_tf32();
void set_allow_tf32(bool on);

// Workspace limit for cuDNN algorithm selection and cuBLASLt (bytes).
constexpr size_t kWorkspaceLimit = size_t(256) << 20;

// Device memory of `device` (engine/cuda/device_memory.cu): stream-ordered on that device's compute
// stream from its retained pool, or cudaMalloc / cudaFree where the device has no memory pools
// (cudaDevAttrMemoryPoolsSupported = 0). device_free never throws; it ignores nullptr.
void* device_alloc(size_t bytes, int device);
void device_free(void* ptr, int device) noexcept;

// Whether `device` allocates from stream-ordered memory pools (CUDA graphs need them).
bool uses_memory_pool(int device);

// CudaGraph's bookkeeping of device memory during a capture on `device` (engine/cuda_graph.h): from
// begin_capture_tracking, device_alloc records each allocation (a node of the graph being captured) and
// device_free of memory allocated before the capture is deferred (a graph cannot free it, and uses it on
// every replay). end_capture_tracking returns:
//  - the allocations still held (leaked): they belong to the graph, which CudaGraph then destroys unlaunched
//    (a graph is kept only when nothing leaked); their holders' later frees are skipped;
//  - the frees a running capture refused (failed_frees; the graph would lack their free nodes);
//  - the deferred memory, to be released (release_deferred) once the graph is destroyed, or at once when the
//    capture failed.
struct CaptureRecord {
  int device = -1;
  int64_t leaked = 0;
  size_t leaked_bytes = 0;
  int64_t failed_frees = 0;
  std::vector<void*> deferred;
};
void begin_capture_tracking(int device);
CaptureRecord end_capture_tracking();
void release_deferred(const CaptureRecord& record);

// Creates the device-resident constants that fills of f32 and f64 tensors read (uploaded on first use,
// which waits for the GPU): CudaGraph makes them before a capture, inside which that upload would fail.
void create_fill_constants(int device);

// Called with the device before every copy from device to host memory (Tensor::to(cpu), item(),
// to_vector()): the NCCL communicator installs its timed wait for the collectives queued so far, so a read
// of data that a dead rank's collective would write throws after BYOL_NCCL_TIMEOUT instead of blocking in
// cudaMemcpy forever. An empty function removes it.
void set_host_read_guard(std::function<void(int device)> guard);
// Runs the installed guard for `device` (nothing if none): before any other host wait on that device's
// compute stream that may sit behind collectives, such as CudaGraph::reset's wait for replays that hold them.
void wait_for_collectives(int device);

// Makes `device` current for a scope and restores the previous device at its end.
struct DeviceGuard {
  int previous = 0;
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
};

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);  // stream-ordered on the current device's compute_stream()
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)),
        bytes_(std::exchange(other.bytes_, 0)),
        device_(std::exchange(other.device_, -1)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;  // no copies: a copy would be a double free or a hidden
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;  // device-to-device transfer

  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }
  // Grows (never shrinks) to at least `bytes`, on the current device; the contents are not kept.
  void reserve(size_t bytes);

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = -1;  // where ptr_ lives
};

// A new buffer of the current device holding a copy of `bytes` of host memory (at least one byte allocated),
// ordered on the compute stream; the host memory may be reused as soon as this returns.
DeviceBuffer device_copy_of(const void* host, size_t bytes);
template <class T>
DeviceBuffer device_copy_of(const std::vector<T>& host) {
  return device_copy_of(host.data(), sizeof(T) * host.size());
}

// A device-side workspace of the compute stream that grows to the largest request and is reused by
// cuDNN and cuBLASLt calls (they are ordered on the one stream, so they never overlap). It may not grow
// inside a CUDA graph capture (check_not_capturing): the step's eager warm-up grows it to its size. Where it
// grows later, while graphs captured with the old buffer live (pin_workspace), that buffer is kept for them.
void* workspace(size_t bytes);
// For CudaGraph, on the current device: a graph that may use the workspace came into being (pin) or went
// (unpin). While any pin is held, workspace() keeps the buffers it outgrows; the last unpin frees them.
void pin_workspace();
void unpin_workspace();

// Throws, naming `what`, if the current device's compute stream is capturing a CUDA graph. For memory that
// outlives the step and is made on first use (the workspace, the LARS table): made inside a capture it would
// belong to the graph, and a refused graph would leave the cache pointing at memory that never existed.
void check_not_capturing(const std::string& what);

}  // namespace byol::cuda
