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

#include <array>
#include <memory>
#include <vector>

#include "engine/math/augment.h"
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

// The GPU half of the loader's raw mode (data::LoaderOptions::raw, data.augment_on = "gpu"): uploads the
// packed uint8 images `pixels` (host), each row's source and each view's AugmentParams through `up`, and runs
// the CUDA augmentation kernel (engine/cuda/augment.cuh) into one f32 [rows, out_h, out_w, 3] tensor per view
// on `device`, queued on the compute stream (the host does not wait for the GPU). sources[i]: row i's image
// in pixels; params[v][i]: view v of row i. `extra` host tensors (the labels) go up in the same upload (one
// staging slot per batch, so the uploader's two slots alternate between batches) and follow the views in
// the result. A build without CUDA fails with an error saying so.
std::vector<Tensor> upload_and_augment(BatchUploader& up, const Tensor& pixels,
                                       const std::vector<math::AugmentSource>& sources,
                                       const std::vector<std::vector<math::AugmentParams>>& params, int out_h,
                                       int out_w, const std::array<float, 3>& mean,
                                       const std::array<float, 3>& std, Device device,
                                       const std::vector<Tensor>& extra = {});

}  // namespace byol
