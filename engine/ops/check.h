// Argument checks shared by the op front ends. Each throws byol::Error with a message of the form
//   "<op>: argument '<arg>' expected <what>, got <tensor description>".
#pragma once

#include "engine/tensor.h"

namespace byol::ops::detail {

void check_defined(const char* op, const char* arg, const Tensor& t);
// dims: exact rank; layout: how the dimensions are named, e.g. "[N, H, W, C]".
void check_rank(const char* op, const char* arg, const Tensor& t, int64_t dims, const char* layout);
void check_floating(const char* op, const char* arg, const Tensor& t);  // f32 or f64
void check_contiguous(const char* op, const char* arg, const Tensor& t);
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

}  // namespace byol::ops::detail
