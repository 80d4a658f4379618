#include "engine/upload.h"

#include <cstring>

#if BYOL_WITH_CUDA
#include "engine/cuda/context.h"
#include "engine/cuda/cuda_check.h"
#endif

namespace byol {

#if BYOL_WITH_CUDA

// Two pinned staging buffers, used in turn, each with the event of the copy that last read it.
struct BatchUploader::Slots {
  struct Slot {
    void* pinned = nullptr;
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;
    int device = -1;
  };
  Slot slot[2];
  int next = 0;
  ~Slots() {
    for (Slot& s : slot) {
      if (s.copied) cudaEventSynchronize(s.copied), cudaEventDestroy(s.copied);
      if (s.pinned) cudaFreeHost(s.pinned);
    }
  }
};

BatchUploader::BatchUploader() : slots_(std::make_unique<Slots>()) {}
BatchUploader::~BatchUploader() = default;

std::vector<Tensor> BatchUploader::upload(const std::vector<Tensor>& host, Device device) {
  std::vector<Tensor> out(host.size());
  if (!device.is_cuda()) {
    for (size_t i = 0; i < host.size(); ++i) out[i] = host[i].defined() ? host[i].to(device) : Tensor();
    return out;
  }
  int current = -1;
  BYOL_CUDA_CHECK(cudaGetDevice(&current));
  BYOL_CHECK(current == device.index, "BatchUploader: uploading to ", device_name(device),
             " while the current GPU is cuda:", current,
             " (its streams would not be ordered with the target's); call cuda_set_device first");
  size_t total = 0;
  std::vector<Tensor> sources(host.size());
  for (size_t i = 0; i < host.size(); ++i) {
    if (!host[i].defined()) continue;
    if (!host[i].device().is_cpu()) {
      BYOL_CHECK(host[i].device() == device, "BatchUploader: ", host[i].describe(),
                 " is on another GPU than ", device_name(device));
      out[i] = host[i];
      continue;
    }
    sources[i] = host[i].contiguous();
    total += (static_cast<size_t>(sources[i].numel()) * dtype_size(sources[i].dtype()) + 255) / 256 * 256;
  }
  if (total == 0) {  // only empty tensors (or none) to send
    for (size_t i = 0; i < host.size(); ++i)
      if (sources[i].defined()) out[i] = Tensor::empty(sources[i].shape(), sources[i].dtype(), device);
    return out;
  }

  Slots::Slot& s = slots_->slot[slots_->next];
  slots_->next ^= 1;
  if (s.copied) BYOL_CUDA_CHECK(cudaEventSynchronize(s.copied));  // the copy that last read this slot
  if (s.bytes < total || s.device != device.index) {
    if (s.pinned) BYOL_CUDA_CHECK(cudaFreeHost(s.pinned));
    if (s.copied) BYOL_CUDA_CHECK(cudaEventDestroy(s.copied));
    s.pinned = nullptr, s.copied = nullptr, s.bytes = 0;
    BYOL_CUDA_CHECK(cudaMallocHost(&s.pinned, total));
    BYOL_CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
    s.bytes = total, s.device = device.index;
  }

  // The destinations are allocated on the compute stream; the copy stream starts after that point.
  for (size_t i = 0; i < host.size(); ++i)
    if (sources[i].defined()) out[i] = Tensor::empty(sources[i].shape(), sources[i].dtype(), device);
  const cudaStream_t compute = cuda::compute_stream(), copy = cuda::copy_stream();
  cudaEvent_t allocated;
  BYOL_CUDA_CHECK(cudaEventCreateWithFlags(&allocated, cudaEventDisableTiming));
  BYOL_CUDA_CHECK(cudaEventRecord(allocated, compute));
  BYOL_CUDA_CHECK(cudaStreamWaitEvent(copy, allocated, 0));
  BYOL_CUDA_CHECK(cudaEventDestroy(allocated));  // released once the wait is satisfied

  char* staging = static_cast<char*>(s.pinned);
  for (size_t i = 0; i < host.size(); ++i) {
    if (!sources[i].defined()) continue;
    const size_t bytes = static_cast<size_t>(sources[i].numel()) * dtype_size(sources[i].dtype());
    std::memcpy(staging, sources[i].raw_data(), bytes);
    BYOL_CUDA_CHECK(cudaMemcpyAsync(out[i].raw_data(), staging, bytes, cudaMemcpyHostToDevice, copy));
    staging += (bytes + 255) / 256 * 256;
  }
  BYOL_CUDA_CHECK(cudaEventRecord(s.copied, copy));
  BYOL_CUDA_CHECK(cudaStreamWaitEvent(compute, s.copied, 0));
  return out;
}

#else

struct BatchUploader::Slots {};
BatchUploader::BatchUploader() = default;
BatchUploader::~BatchUploader() = default;

std::vector<Tensor> BatchUploader::upload(const std::vector<Tensor>& host, Device device) {
  std::vector<Tensor> out(host.size());
  // A CUDA device here fails in Tensor::to with the "no CUDA backend" error.
  for (size_t i = 0; i < host.size(); ++i) out[i] = host[i].defined() ? host[i].to(device) : Tensor();
  return out;
}

#endif

}  // namespace byol
