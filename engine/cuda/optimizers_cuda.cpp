// The CUDA halves of the optimizer ops (engine/cuda/optimizers_cuda.h): the handwritten kernels of
// engine/cuda/ema.cu, lars.cu and optimizers.cu on the compute stream, and the LARS layout's device table.
// The front ends (engine/ops/optimizers.cpp) have checked every buffer.
#include <cstring>

#include "engine/cuda/context.h"
#include "engine/cuda/ema.cuh"
#include "engine/cuda/lars.cuh"
#include "engine/cuda/optimizers.cuh"
#include "engine/cuda/optimizers_cuda.h"

namespace byol::ops {

const LarsLayout::DeviceTable& LarsLayout::device_table(Device device) const {
  if (!table_.bytes.defined() || table_.bytes.device() != device) {
    cuda::check_not_capturing("LARS: uploading the segment table");
    kernels::LarsSegments seg;
    for (const Segment& s : segments_) {
      seg.begins.push_back(s.begin);
      seg.ends.push_back(s.end);
      seg.flags.push_back(static_cast<uint8_t>((s.no_weight_decay ? kernels::kLarsNoWeightDecay : 0) |
                                               (s.no_adapt ? kernels::kLarsNoAdapt : 0)));
    }
    const kernels::LarsTable packed = kernels::lars_pack_segments(seg, numel_);
    Tensor host = Tensor::empty({static_cast<int64_t>(packed.bytes.size())}, DType::u8);
    if (!packed.bytes.empty()) std::memcpy(host.data<uint8_t>(), packed.bytes.data(), packed.bytes.size());
    table_.bytes = host.to(device);
    table_.chunks = packed.chunks;
    table_.chunk = packed.chunk;
  }
  return table_;
}

}  // namespace byol::ops

namespace byol::cuda {

void ema(float* target, const float* online, int64_t n, float tau, const float* tau_device) {
  kernels::ema_update(target, online, n, tau, compute_stream(), tau_device);
}

void lars_step(float* w, const float* g, float* m, const ops::LarsLayout& layout, const ops::LarsHyper& h,
               const float* lr_device, double* trust_out) {
  const int segments = static_cast<int>(layout.segments().size());
  if (segments == 0) return;
  const ops::LarsLayout::DeviceTable& table = layout.device_table(Device::cuda(current_device()));
  kernels::lars_step(w, g, m, table.bytes.data<uint8_t>(), segments, table.chunks, table.chunk,
                     {h.lr.value(), h.weight_decay, h.momentum, h.eta, lr_device}, trust_out,
                     compute_stream());
}

void sgd_step(float* w, float* m, const float* g, int64_t n, float lr, float momentum, float weight_decay,
              bool nesterov) {
  kernels::sgd_step(w, m, g, n, lr, momentum, weight_decay, nesterov, compute_stream());
}

void adamw_step(float* w, float* m, float* v, const float* g, int64_t n, float lr, float beta1, float beta2,
                float eps, float weight_decay, float bias1, float bias2) {
  kernels::adamw_step(w, m, v, g, n, {lr, beta1, beta2, eps, weight_decay, bias1, bias2}, compute_stream());
}

}  // namespace byol::cuda
