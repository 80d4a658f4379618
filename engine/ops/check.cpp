#include "engine/ops/check.h"

namespace byol::ops::detail {

void check_defined(const char* op, const char* arg, const Tensor& t) {
  BYOL_CHECK(t.defined(), op, ": argument '", arg, "' expected a tensor, got an undefined tensor");
}

void check_rank(const char* op, const char* arg, const Tensor& t, int64_t dims, const char* layout) {
  check_defined(op, arg, t);
  BYOL_CHECK(t.dim() == dims, op, ": argument '", arg, "' expected ", dims, " dimensions ", layout, ", got ",
             t.describe());
}

void check_floating(const char* op, const char* arg, const Tensor& t) {
  check_defined(op, arg, t);
  BYOL_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, op, ": argument '", arg,
             "' expected dtype f32 or f64, got ", t.describe());
}

void check_activation(const char* op, const char* arg, const Tensor& t) {
  check_defined(op, arg, t);
  BYOL_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64 || t.dtype() == DType::bf16, op,
             ": argument '", arg, "' expected dtype f32, f64 or bf16, got ", t.describe());
}

void check_param(const char* op, const char* arg, const Tensor& t, const Tensor& x) {
  check_defined(op, arg, t);
  const DType want = compute_dtype(x.dtype());
  BYOL_CHECK(t.dtype() == want, op, ": argument '", arg, "' expected dtype ", dtype_name(want),
             x.dtype() == DType::bf16 ? " (bf16 inputs keep float32 parameters)" : " (that of the input)",
             ", got ", t.describe());
  BYOL_CHECK(t.device() == x.device(), op, ": argument '", arg, "' expected device ", device_name(x.device()),
             " (that of the input), got ", t.describe());
}

void check_contiguous(const char* op, const char* arg, const Tensor& t) {
  BYOL_CHECK(t.is_contiguous(), op, ": argument '", arg,
             "' expected a contiguous tensor (call .contiguous()), got strides ", shape_str(t.strides()),
             " for ", t.describe());
}

void check_bf16_products(const char* op, const Tensor& x, bool bf16) {
  if (!bf16) return;
  BYOL_CHECK(x.dtype() == DType::f32, op, ": bf16 products need float32 input and weight, got ",
             x.describe());
  BYOL_CHECK(x.device().is_cpu(), op,
             ": bf16 products on float32 inputs run on the CPU backend; on a GPU, bf16 takes bf16 inputs "
             "(cast the activations with ops::cast, as train.precision = \"bf16\" does there), got ",
             x.describe());
}

void check_shape(const char* op, const char* arg, const Tensor& t, const Shape& expected,
                 const char* meaning) {
  check_defined(op, arg, t);
  BYOL_CHECK(t.shape() == expected, op, ": argument '", arg, "' expected shape ", shape_str(expected), " (",
             meaning, "), got ", t.describe());
}

void check_like(const char* op, const char* arg, const Tensor& t, const char* ref_arg, const Tensor& ref) {
  check_defined(op, arg, t);
  BYOL_CHECK(t.dtype() == ref.dtype(), op, ": argument '", arg, "' expected dtype ", dtype_name(ref.dtype()),
             " (that of '", ref_arg, "'), got ", t.describe());
  BYOL_CHECK(t.device() == ref.device(), op, ": argument '", arg, "' expected device ",
             device_name(ref.device()), " (that of '", ref_arg, "'), got ", t.describe());
}

void unsupported_device(const char* op, const Tensor& t) {
  BYOL_FAIL(op, ": this build has no ", device_name(t.device()),
            " kernel for this op (the CUDA backend of byol.cpp provides it); got ", t.describe(),
            ". Move the inputs to the CPU with .to(Device::cpu())");
}

}  // namespace byol::ops::detail
