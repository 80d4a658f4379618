#include "engine/cuda/context.h"

#include <array>
#include <mutex>
#include <vector>

#include "engine/cuda/cuda_check.h"

namespace byol::cuda {
namespace {

constexpr int kMaxDevices = 64;
constexpr size_t kCublasWorkspace = size_t(32) << 20;

struct DeviceState {
  std::once_flag once;
  cudaStream_t compute = nullptr;
  cudaStream_t copy = nullptr;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  DeviceBuffer* workspace = nullptr;  // leaked on purpose, like the streams
  // Live CUDA graphs hold the workspace's address in their nodes: while any exists, a growing workspace
  // keeps its earlier buffers here instead of freeing them (pin_workspace).
  int workspace_pins = 0;
  std::vector<DeviceBuffer> retired_workspaces;
};

std::array<DeviceState, kMaxDevices>& states() {
  static std::array<DeviceState, kMaxDevices> s;
  return s;
}

bool g_allow_tf32 = true;

DeviceState& state() {
  const int dev = current_device();
  BYOL_CHECK(dev >= 0 && dev < kMaxDevices, "CUDA backend: device index ", dev, " is out of range");
  DeviceState& s = states()[dev];
  std::call_once(s.once, [&s] {
    BYOL_CUDA_CHECK(cudaStreamCreateWithFlags(&s.compute, cudaStreamDefault));
    BYOL_CUDA_CHECK(cudaStreamCreateWithFlags(&s.copy, cudaStreamNonBlocking));
    BYOL_CUBLAS_CHECK(cublasCreate(&s.cublas));
    BYOL_CUBLAS_CHECK(cublasSetStream(s.cublas, s.compute));
    // A workspace of its own for cuBLAS (after cublasSetStream, which resets it), allocated once: with its
    // default, cuBLAS may allocate on first use of a stream, which must not happen inside a CUDA graph
    // capture (engine/cuda_graph.h). 32 MiB is what cuBLAS's documentation recommends for Hopper.
    void* blas_workspace = nullptr;
    BYOL_CUDA_CHECK(cudaMalloc(&blas_workspace, kCublasWorkspace));  // leaked on purpose, like the handle
    BYOL_CUBLAS_CHECK(cublasSetWorkspace(s.cublas, blas_workspace, kCublasWorkspace));
    BYOL_CUBLAS_CHECK(cublasLtCreate(&s.cublaslt));
  });
  return s;
}

}  // namespace

int current_device() {
  int dev = 0;
  BYOL_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

cudaStream_t compute_stream() {
  return state().compute;
}
cudaStream_t copy_stream() {
  return state().copy;
}
cublasHandle_t cublas_handle() {
  return state().cublas;
}
cublasLtHandle_t cublaslt_handle() {
  return state().cublaslt;
}

bool allow_tf32() {
  return g_allow_tf32;
}

void set_allow_tf32(bool on) {
  g_allow_tf32 = on;
}

DeviceGuard::DeviceGuard(int device) {
  BYOL_CUDA_CHECK(cudaGetDevice(&previous));
  if (previous != device) BYOL_CUDA_CHECK(cudaSetDevice(device));
}

DeviceGuard::~DeviceGuard() {
  cudaSetDevice(previous);
}

DeviceBuffer::DeviceBuffer(size_t bytes) {
  reserve(bytes);
}

DeviceBuffer::~DeviceBuffer() {
  device_free(ptr_, device_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    device_free(ptr_, device_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

void DeviceBuffer::reserve(size_t bytes) {
  const int dev = current_device();
  if (bytes <= bytes_ && ptr_ && dev == device_) return;
  device_free(ptr_, device_);
  ptr_ = nullptr;
  bytes_ = 0;
  ptr_ = device_alloc(bytes == 0 ? 1 : bytes, dev);
  device_ = dev;
  bytes_ = bytes;
}

DeviceBuffer device_copy_of(const void* host, size_t bytes) {
  DeviceBuffer b(bytes == 0 ? 1 : bytes);
  if (bytes > 0)
    BYOL_CUDA_CHECK(cudaMemcpyAsync(b.get(), host, bytes, cudaMemcpyHostToDevice, compute_stream()));
  return b;
}

void* workspace(size_t bytes) {
  DeviceState& s = state();
  if (!s.workspace) s.workspace = new DeviceBuffer();
  const DeviceBuffer& w = *s.workspace;
  if (bytes > w.bytes() || !w.get() || w.device() != current_device()) {
    check_not_capturing(
        cat("cuda::workspace (cuDNN / cuBLASLt scratch) growing from ", w.bytes(), " to ", bytes, " bytes"));
    // A captured graph replays with the old address: the old buffer lives as long as the graphs do.
    if (s.workspace_pins > 0 && w.get()) s.retired_workspaces.push_back(std::move(*s.workspace));
  }
  s.workspace->reserve(bytes);
  return s.workspace->get();
}

void pin_workspace() {
  ++state().workspace_pins;
}

void unpin_workspace() {
  DeviceState& s = state();
  if (s.workspace_pins > 0 && --s.workspace_pins == 0) s.retired_workspaces.clear();
}

void check_not_capturing(const std::string& what) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  BYOL_CUDA_CHECK(cudaStreamIsCapturing(compute_stream(), &status));
  BYOL_CHECK(
      status == cudaStreamCaptureStatusNone, what,
      " inside a CUDA graph capture: this memory outlives the step, and made here it would belong to the "
      "graph; the eager warm-up steps before the capture should have made it (a shape they did not have?)");
}

}  // namespace byol::cuda
