// Argument checks shared by the op front ends. Each throws byol::Error with a message of the form
//   "<op>: argument '<arg>' expected <what>, got <tensor description>".
#pragma once

#include "engine/tensor.h"

// BYOL_ON_CUDA(op, t, stmt) runs stmt in a CUDA build and reports "no kernel for this device" in a
// CPU-only one. There stmt is only type-checked (an unevaluated operand of sizeof): the front ends (compiled
// in every build) see the declarations of the cuda:: functions (engine/cuda/cuda_backend.h, blas.h,
// conv_cudnn.h, optimizers_cuda.h, plain C++ headers) but never reference their definitions, and a call
// with the wrong types fails in the CPU-only build too.
#if BYOL_WITH_CUDA
#define BYOL_ON_CUDA(op, t, stmt) stmt
#else
#define BYOL_ON_CUDA(op, t, stmt) ((void)sizeof((stmt, 0)), ::byol::ops::detail::unsupported_device(op, t))
#endif

namespace byol::ops::detail {

void check_defined(const char* op, const char* arg, const Tensor& t);
// dims: exact rank; layout: how the dimensions are named, e.g. "[N, H, W, C]".
void check_rank(const char* op, const char* arg, const Tensor& t, int64_t dims, const char* layout);
void check_floating(const char* op, const char* arg, const Tensor& t);  // f32 or f64
// An activation of the ops that take bf16 storage (conv2d, batch norm, pooling, relu, add, cast): f32, f64
// or bf16.
void check_activation(const char* op, const char* arg, const Tensor& t);
// A float parameter of an op whose input is x: x's compute dtype (f32 for bf16 activations) and device.
void check_param(const char* op, const char* arg, const Tensor& t, const Tensor& x);
void check_contiguous(const char* op, const char* arg, const Tensor& t);
// bf16 products (Conv2dParams::bf16, LinearParams::bf16) need float32 input on the CPU backend.
void check_bf16_products(const char* op, const Tensor& x, bool bf16);
void check_shape(const char* op, const char* arg, const Tensor& t, const Shape& expected,
                 const char* meaning);
// t matches ref (argument ref_arg) in dtype and device.
void check_like(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref);
// The op has no kernel for the device of its inputs in this build.
[[noreturn]] void unsupported_device(const char* op, const Tensor& t);

// Calls f(T{}) with T = float or double.
template <class F>
void dispatch_float(DType t, F&& f) {
  if (t == DType::f32) {
    f(float{});
  } else {
    f(double{});
  }
}

// Calls f(S{}) with S = float, double or bf16: an activation's storage type (compute_t<S> is the type of
// the op's float parameters and math).
template <class F>
void dispatch_storage(DType t, F&& f) {
  if (t == DType::bf16) {
    f(bf16{});
  } else {
    dispatch_float(t, f);
  }
}

// An optional tensor's data, or null: no bias, a gradient no input needs (the backends skip a null output).
template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Runs an op's backend for the device of `t`: cpu(T{}) on the CPU, T the tensor's floating dtype (float or
// double); cuda() on a GPU, whose backend runs float only. The cuda lambda wraps its calls in BYOL_ON_CUDA
// (above), so a CPU-only build reports the device instead of referencing them. The front
// ends call this in forward and in the backward they record, once for both backends.
template <class Cpu, class Cuda>
void on_backend(const char* op, const Tensor& t, Cpu&& cpu, Cuda&& cuda) {
  if (t.device().is_cpu()) {
    dispatch_float(t.dtype(), cpu);
    return;
  }
  BYOL_CHECK(t.dtype() == DType::f32, op, ": ", t.describe(),
             " on a GPU: the CUDA backend runs float32 (f64 runs on the CPU)");
  cuda();
}

// on_backend for the ops whose activations may be stored as bf16 (check_activation): cpu(S{}) with S the
// storage type (float, double or bf16); cuda(S{}) with S = float or bf16.
template <class Cpu, class Cuda>
void on_backend_act(const char* op, const Tensor& t, Cpu&& cpu, Cuda&& cuda) {
  if (t.device().is_cpu()) {
    dispatch_storage(t.dtype(), cpu);
    return;
  }
  BYOL_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::bf16, op, ": ", t.describe(),
             " on a GPU: the CUDA backend runs float32 and bf16 activations (f64 runs on the CPU)");
  if (t.dtype() == DType::bf16) {
    cuda(bf16{});
  } else {
    cuda(float{});
  }
}

// ReLU's backward from its output: dy where y > 0, else 0 (engine/ops/elementwise.cpp). Used by relu and by
// the fused batch_norm_relu; dy contiguous, like y.
Tensor relu_grad(const char* op, const Tensor& y, const Tensor& dy);

}  // namespace byol::ops::detail
