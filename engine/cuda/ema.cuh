// EMA of the target network over its flat parameter buffer (BYOL sec. 3.1, eq. 1), in place, in one
// launch for the whole network, with no host synchronisation:
//   target[i] <- math::ema_update(target[i], online[i], tau)   for i < n
// (online may be longer: the target is the prefix of the online layout). float4 loads and stores when
// both buffers are 16-byte aligned (flat buffers always are), scalar otherwise.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace byol::kernels {

// tau_device: when non-null, the kernel reads tau (f32) there when it runs instead of taking `tau`, so a
// captured CUDA graph replays with the value written before each launch.
void ema_update(float* target, const float* online, int64_t n, double tau, cudaStream_t stream,
                const float* tau_device = nullptr);

}  // namespace byol::kernels
