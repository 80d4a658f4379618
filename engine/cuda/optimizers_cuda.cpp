// The CUDA halves of the optimizer ops (engine/optim_ops.h): the handwritten kernels of kernels/ema.cu,
// lars.cu and optimizers.cu on the compute stream. The front ends (engine/ops/optimizer_ops.cpp) have
// checked every buffer.
#include <cstring>

#include "engine/cuda/context.h"
#include "engine/cuda/cuda_ops.h"
#include "kernels/ema.cuh"
#include "kernels/lars.cuh"
#include "kernels/optimizers.cuh"

namespace byol::ops {

const LarsLayout::DeviceTable& LarsLayout::device_table(Device device) const {
  if (!table_.bytes.defined() || table_.bytes.device() != device) {
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
  }
  return table_;
}

namespace detail {

void ema_cuda(const Tensor& target, const Tensor& online, double tau) {
  kernels::ema_update(target.data<float>(), online.data<float>(), target.numel(), tau,
                      cuda::compute_stream());
}

void lars_step_cuda(const Tensor& w, const Tensor& g, const Tensor& m, const LarsLayout& layout,
                    const LarsHyper& h, const Tensor& trust_out) {
  const int segments = static_cast<int>(layout.segments().size());
  if (segments == 0) return;
  const LarsLayout::DeviceTable& table = layout.device_table(w.device());
  kernels::lars_step(w.data<float>(), g.data<float>(), m.data<float>(), table.bytes.data<uint8_t>(), segments,
                     table.chunks, {h.lr, h.weight_decay, h.momentum, h.eta}, trust_out.data<double>(),
                     cuda::compute_stream());
}

void sgd_step_cuda(const Tensor& w, const Tensor& m, const Tensor& g, float lr, float momentum,
                   float weight_decay, bool nesterov) {
  kernels::sgd_step(w.data<float>(), m.data<float>(), g.data<float>(), w.numel(), lr, momentum, weight_decay,
                    nesterov, cuda::compute_stream());
}

void adamw_step_cuda(const Tensor& w, const Tensor& m, const Tensor& v, const Tensor& g,
                     const AdamWFloats& h) {
  kernels::adamw_step(w.data<float>(), m.data<float>(), v.data<float>(), g.data<float>(), w.numel(),
                      {h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.bias1, h.bias2},
                      cuda::compute_stream());
}

}  // namespace detail
}  // namespace byol::ops
