// NHWC convolutions with KRSC filters through cuDNN (float32, and bf16 activations). For each geometry (and
// TF32 setting) a plan holds RAII descriptors and, per direction, the algorithm that cudnnFind*AlgorithmEx
// timed fastest on the first call within cuda::kWorkspaceLimit; later calls of that shape reuse it. Every
// call is enqueued on the compute stream; the outputs are written (=), never accumulated.
#pragma once

#include "engine/cpu/cpu_backend.h"  // ConvGeom
#include "engine/dtype.h"

namespace byol::cuda {

bool cudnn_available();  // false when this build found no cuDNN
void conv2d_forward(const float* x, const float* w, float* y, const cpu::ConvGeom& g);
void conv2d_backward_data(const float* dy, const float* w, float* dx, const cpu::ConvGeom& g);
void conv2d_backward_filter(const float* dy, const float* x, float* dw, const cpu::ConvGeom& g);
// bf16 activations (train.precision = "bf16" on a GPU): x, y, dy, dx in bf16, the float32 weights cast to
// a bf16 copy per call, float accumulation (cuDNN's PSEUDO_BFLOAT16_CONFIG, on the tensor cores), each
// output rounded once; the filter gradient comes back from cuDNN in bf16 and is widened to float32.
void conv2d_forward(const bf16* x, const float* w, bf16* y, const cpu::ConvGeom& g);
void conv2d_backward_data(const bf16* dy, const float* w, bf16* dx, const cpu::ConvGeom& g);
void conv2d_backward_filter(const bf16* dy, const bf16* x, float* dw, const cpu::ConvGeom& g);
// Where cuDNN finds no bf16 algorithm for a geometry and direction, that direction runs the float32 plan on
// widened copies (exact products of the bf16 values, the sums rounded once into bf16; said once on stderr).
// For tests: true sends every bf16 convolution down that path.
void force_bf16_conv_fallback(bool on);

}  // namespace byol::cuda
