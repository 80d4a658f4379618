// Host-to-device transfer of input batches (views, labels) without waiting for the GPU's compute.
//
// Tensor::to(cuda) copies with a synchronous cudaMemcpy from pageable memory: the host waits for the
// copy and, through the legacy stream, for everything queued on the compute stream before it, so a
// training loop that uploads each batch that way stalls once per step. BatchUploader instead
//  1. allocates the device tensors (stream-ordered, on the compute stream) and has the copy stream wait
//     for that point (an event), so the copy never writes memory the allocator has not handed out yet;
//  2. stages the host bytes in pinned memory and copies them with cudaMemcpyAsync on the copy stream
//     (engine/cuda/context.h);
//  3. makes the compute stream wait for the copy (an event): work queued after upload() sees the data.
// The host waits only for the copy that last used the same staging slot (two slots, used in turn), never
// for the compute stream, so it can decode and queue ahead. The copy itself does not overlap compute:
// it starts after everything queued before upload() (step 1's event), and the next step waits for it —
// about 1 ms per 25 MB at PCIe 5 rates. Overlapping it needs destinations owned by the uploader and a
// batch uploaded one step ahead (not done yet). Tensors for the CPU, or already on the target device, are
// returned as they are; the target GPU must be the current one (checked).
#pragma once

#include <memory>
#include <vector>

#include "engine/tensor.h"

namespace byol {

class BatchUploader {
 public:
  BatchUploader();
  ~BatchUploader();
  BatchUploader(const BatchUploader&) = delete;
  BatchUploader& operator=(const BatchUploader&) = delete;

  // The tensors on `device`, in order; undefined tensors stay undefined.
  std::vector<Tensor> upload(const std::vector<Tensor>& host, Device device);

 private:
  struct Slots;
  std::unique_ptr<Slots> slots_;
};

}  // namespace byol
