// NHWC convolutions with KRSC filters through cuDNN (float32). For each geometry (and TF32 setting)
// a plan holds RAII descriptors and, per direction, the algorithm that cudnnFind*AlgorithmEx timed
// fastest on the first call within cuda::kWorkspaceLimit; later calls of that shape reuse it. Every call
// is enqueued on the compute stream; the outputs are written (=), never accumulated.
#pragma once

#include "engine/cpu/cpu_backend.h"  // ConvGeom

namespace byol::cuda {

bool cudnn_available();  // false when this build found no cuDNN
void conv2d_forward(const float* x, const float* w, float* y, const cpu::ConvGeom& g);
void conv2d_backward_data(const float* dy, const float* w, float* dx, const cpu::ConvGeom& g);
void conv2d_backward_filter(const float* dy, const float* x, float* dw, const cpu::ConvGeom& g);

}  // namespace byol::cuda
