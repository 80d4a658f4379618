#include "engine/upload.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if BYOL_WITH_CUDA
#include "engine/cuda/augment.cuh"
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
    // Grown by half again at least: decoded batches of variable-size images (data.augment_on = "gpu") ask for
    // a little more now and then, and each regrowth frees pinned memory, which waits for the device.
    const size_t want = s.device == device.index ? std::max(total, s.bytes + s.bytes / 2) : total;
    if (s.pinned) BYOL_CUDA_CHECK(cudaFreeHost(s.pinned));
    if (s.copied) BYOL_CUDA_CHECK(cudaEventDestroy(s.copied));
    s.pinned = nullptr, s.copied = nullptr, s.bytes = 0;
    BYOL_CUDA_CHECK(cudaMallocHost(&s.pinned, want));
    BYOL_CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
    s.bytes = want, s.device = device.index;
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

namespace {
// A host vector of plain structs as a u8 tensor of its bytes (uploaded as is).
template <class T>
Tensor bytes_of(const std::vector<T>& v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(sizeof(T) * v.size())}, DType::u8);
  if (!v.empty()) std::memcpy(t.raw_data(), v.data(), sizeof(T) * v.size());
  return t;
}
}  // namespace

std::vector<Tensor> upload_and_augment(BatchUploader& up, const Tensor& pixels,
                                       const std::vector<math::AugmentSource>& sources,
                                       const std::vector<std::vector<math::AugmentParams>>& params, int out_h,
                                       int out_w, const std::array<float, 3>& mean,
                                       const std::array<float, 3>& std, Device device,
                                       const std::vector<Tensor>& extra) {
  BYOL_CHECK(device.is_cuda(), "upload_and_augment: expected a CUDA device, got ", device_name(device));
  BYOL_CHECK(
      pixels.defined() && pixels.dtype() == DType::u8 && pixels.device().is_cpu() && pixels.is_contiguous(),
      "upload_and_augment: expected the packed images as a contiguous host u8 tensor, got ",
      pixels.defined() ? pixels.describe() : std::string("none"));
  const int64_t rows = static_cast<int64_t>(sources.size()), views = static_cast<int64_t>(params.size());
  std::vector<math::AugmentSource> descs;
  std::vector<math::AugmentParams> flat;
  for (int64_t v = 0; v < views; ++v) {
    BYOL_CHECK(static_cast<int64_t>(params[v].size()) == rows, "upload_and_augment: view ", v, " has ",
               params[v].size(), " parameter sets for ", rows, " rows");
    for (int64_t i = 0; i < rows; ++i) {
      const math::AugmentSource& s = sources[i];
      const math::AugmentParams& p = params[v][i];
      BYOL_CHECK(p.crop_h > 0 && p.crop_w > 0 && std::isfinite(p.crop_h) && std::isfinite(p.crop_w),
                 "upload_and_augment: view ", v, " row ", i, " has a crop of ", p.crop_w, "x", p.crop_h,
                 " (expected positive, finite sides)");
      for (int k = 0; k < 4; ++k)
        BYOL_CHECK(p.jitter_order[k] < 4, "upload_and_augment: view ", v, " row ", i, " has jitter_order[", k,
                   "] = ", int(p.jitter_order[k]), " (expected 0..3)");
      BYOL_CHECK(s.offset >= 0 && (s.channels == 1 || s.channels == 3) && s.height > 0 && s.width > 0 &&
                     s.offset + int64_t(s.height) * s.width * s.channels <= pixels.numel(),
                 "upload_and_augment: row ", i, "'s image (", s.height, "x", s.width, "x", s.channels,
                 " at byte ", s.offset, ") is not inside the ", pixels.numel(), " packed bytes");
      descs.push_back(s);
      flat.push_back(params[v][i]);
    }
  }
  const kernels::AugmentScratchPlan plan = kernels::plan_augment_scratch(flat, descs, out_h, out_w);
  Tensor offsets = Tensor::empty({static_cast<int64_t>(plan.offsets.size())}, DType::i64);
  if (!plan.offsets.empty())
    std::memcpy(offsets.raw_data(), plan.offsets.data(), sizeof(int64_t) * plan.offsets.size());
  std::vector<Tensor> host = {pixels, bytes_of(descs), bytes_of(flat), offsets};
  host.insert(host.end(), extra.begin(), extra.end());
  const std::vector<Tensor> d = up.upload(host, device);
  Tensor out = Tensor::empty({views * rows, out_h, out_w, 3}, DType::f32, device);
  Tensor scratch = Tensor::empty({std::max<int64_t>(plan.total_floats, 1)}, DType::f32, device);
  kernels::augment_views(d[0].data<uint8_t>(), static_cast<const math::AugmentSource*>(d[1].raw_data()),
                         static_cast<const math::AugmentParams*>(d[2].raw_data()), d[3].data<int64_t>(),
                         static_cast<int>(views * rows), out_h, out_w, mean.data(), std.data(),
                         plan.max_blur_radius, out.data<float>(), scratch.data<float>(),
                         cuda::compute_stream());
  std::vector<Tensor> result;
  for (int64_t v = 0; v < views; ++v) result.push_back(out.slice_rows(v * rows, (v + 1) * rows));
  result.insert(result.end(), d.begin() + 4, d.end());
  return result;
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

std::vector<Tensor> upload_and_augment(BatchUploader&, const Tensor&, const std::vector<math::AugmentSource>&,
                                       const std::vector<std::vector<math::AugmentParams>>&, int, int,
                                       const std::array<float, 3>&, const std::array<float, 3>&, Device,
                                       const std::vector<Tensor>&) {
  BYOL_FAIL("augmentation on the GPU (data.augment_on = \"gpu\"): this build has no CUDA backend");
}

#endif

}  // namespace byol
