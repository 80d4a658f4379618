#include "engine/tensor.h"

#include <cstring>

#include "engine/autograd.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/device_memory.h"

namespace byol {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t st = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = st;
    st *= shape[i];
  }
  return strides;
}

namespace {

void check_shape(const Shape& shape, const char* who) {
  for (int64_t d : shape) BYOL_CHECK(d >= 0, who, ": shape ", shape_str(shape), " has a negative dimension");
}

template <class F>
void dispatch_any(DType t, F&& f) {
  switch (t) {
    case DType::f32:
      f(float{});
      break;
    case DType::f64:
      f(double{});
      break;
    case DType::bf16:
      f(bf16{});
      break;
    case DType::u8:
      f(uint8_t{});
      break;
    case DType::i32:
      f(int32_t{});
      break;
    case DType::i64:
      f(int64_t{});
      break;
  }
}

template <class T>
double to_double(T v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return bf16_to_float(v);
  } else {
    return static_cast<double>(v);
  }
}

template <class T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return float_to_bf16(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// One element of Tensor::to: float -> bf16 rounds once (through double it would round twice). A function
// template of its own, not an `if constexpr` inside the nested generic lambdas, where clang 14 checks the
// discarded float_to_bf16(bf16) call before the inner lambda's type is known.
template <class D, class S>
D cast_element(S v) {
  if constexpr (std::is_same_v<D, bf16> && std::is_same_v<S, float>) {
    return float_to_bf16(v);
  } else if constexpr (std::is_same_v<D, float> && std::is_same_v<S, bf16>) {
    return bf16_to_float(v);
  } else {
    return from_double<D>(to_double(v));
  }
}

// Visits the element offsets of a strided view in row-major order.
template <class F>
void for_each_offset(const Shape& shape, const Shape& strides, int64_t base, F&& f) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  std::vector<int64_t> idx(shape.size(), 0);
  int64_t off = base;
  for (int64_t i = 0; i < n; ++i) {
    f(i, off);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

}  // namespace

// --- factories -------------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "Tensor::empty");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  // f32 / f64 on a GPU (the backward seed every step): filled there by a kernel, the same value as the
  // host's fill, without a copy from the host (which would wait for the GPU, and cannot be part of a
  // captured CUDA graph). Other dtypes are filled on the host and copied.
  const bool kernel_fill = device.is_cuda() && (dtype == DType::f32 || dtype == DType::f64);
  Tensor t = empty(shape, dtype, kernel_fill ? device : Device::cpu());
  t.fill_(value);
  return device.is_cpu() || kernel_fill ? t : t.to(device);
}

Tensor Tensor::randn(const Shape& shape, std::mt19937_64& gen, DType dtype, double mean, double std) {
  std::normal_distribution<double> dist(mean, std);
  Tensor t = empty(shape, dtype);
  dispatch_any(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = from_double<T>(dist(gen));
  });
  return t;
}

Tensor Tensor::uniform(const Shape& shape, std::mt19937_64& gen, double lo, double hi, DType dtype) {
  std::uniform_real_distribution<double> dist(lo, hi);
  Tensor t = empty(shape, dtype);
  dispatch_any(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = from_double<T>(dist(gen));
  });
  return t;
}

// --- metadata ----------------------------------------------------------------------------------------

void Tensor::require_defined(const char* what) const {
  BYOL_CHECK(impl_ != nullptr, "Tensor::", what, ": the tensor is undefined (default-constructed)");
}

const Shape& Tensor::shape() const {
  require_defined("shape");
  return impl_->shape;
}
const Shape& Tensor::strides() const {
  require_defined("strides");
  return impl_->strides;
}
int64_t Tensor::size(int64_t d) const {
  int64_t n = dim();
  int64_t i = d < 0 ? d + n : d;
  BYOL_CHECK(i >= 0 && i < n, "Tensor::size: dimension ", d, " out of range for ", describe());
  return impl_->shape[i];
}
int64_t Tensor::numel() const {
  return shape_numel(shape());
}
DType Tensor::dtype() const {
  require_defined("dtype");
  return impl_->dtype;
}
Device Tensor::device() const {
  require_defined("device");
  return impl_->storage->device();
}
int64_t Tensor::offset() const {
  require_defined("offset");
  return impl_->offset;
}
bool Tensor::is_contiguous() const {
  return strides() == contiguous_strides(shape()) || numel() <= 1;
}
const std::string& Tensor::name() const {
  require_defined("name");
  return impl_->name;
}
Tensor& Tensor::set_name(std::string name) {
  require_defined("set_name");
  impl_->name = std::move(name);
  return *this;
}
std::string Tensor::describe() const {
  if (!impl_) return "(undefined)";
  std::string n = impl_->name.empty() ? "" : "'" + impl_->name + "' ";
  return cat(n, dtype_name(impl_->dtype), shape_str(impl_->shape), " on ", device_name(device()));
}

// --- data --------------------------------------------------------------------------------------------

void* Tensor::raw_data() const {
  require_defined("raw_data");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(impl_->dtype);
}

const std::shared_ptr<Storage>& Tensor::storage() const {
  require_defined("storage");
  return impl_->storage;
}

double Tensor::item() const {
  BYOL_CHECK(numel() == 1, "Tensor::item: expected a one-element tensor, got ", describe());
  Tensor host = to(Device::cpu());
  double v = 0;
  dispatch_any(dtype(), [&](auto tag) {
    using T = decltype(tag);
    v = to_double(*host.data<T>());
  });
  return v;
}

// --- views and copies --------------------------------------------------------------------------------

Tensor Tensor::view(const Shape& shape) const {
  check_shape(shape, "Tensor::view");
  BYOL_CHECK(is_contiguous(), "Tensor::view: ", describe(), " is not contiguous");
  BYOL_CHECK(shape_numel(shape) == numel(), "Tensor::view: cannot view ", describe(), " as ",
             shape_str(shape), " (", numel(), " vs ", shape_numel(shape), " elements)");
  Tensor out = detach();
  out.impl_->shape = shape;
  out.impl_->strides = contiguous_strides(shape);
  return out;
}

Tensor Tensor::slice_rows(int64_t start, int64_t end) const {
  BYOL_CHECK(dim() >= 1, "Tensor::slice_rows: ", describe(), " has no dimension to slice");
  BYOL_CHECK(0 <= start && start <= end && end <= shape()[0], "Tensor::slice_rows: rows [", start, ", ", end,
             ") out of range for ", describe());
  Tensor out = detach();
  out.impl_->shape[0] = end - start;
  out.impl_->offset += start * out.impl_->strides[0];
  return out;
}

Tensor Tensor::window(int64_t offset, const Shape& shape) const {
  check_shape(shape, "Tensor::window");
  BYOL_CHECK(is_contiguous(), "Tensor::window: ", describe(), " is not contiguous");
  BYOL_CHECK(offset >= 0 && offset + shape_numel(shape) <= numel(), "Tensor::window: ", shape_str(shape),
             " at offset ", offset, " does not fit in ", describe());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->offset = impl_->offset + offset;
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = impl_->dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::detach() const {
  require_defined("detach");
  auto impl = std::make_shared<TensorImpl>(*impl_);
  impl->requires_grad = false;
  impl->grad.reset();
  impl->grad_fn.reset();
  return Tensor(std::move(impl));
}

Tensor Tensor::contiguous() const {
  return is_contiguous() ? *this : clone();
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  out.copy_(*this);
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), device);
  out.copy_(src);
  return out;
}

Tensor Tensor::to(DType target) const {
  if (target == dtype()) return *this;
#if BYOL_WITH_CUDA
  if (device().is_cuda()) {
    const auto supported = [](DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; };
    BYOL_CHECK(supported(dtype()) && supported(target), "Tensor::to(", dtype_name(target), "): casting ",
               describe(), " on a GPU supports f32, f64 and bf16; copy it to the CPU for other dtypes");
    const Tensor src = contiguous();
    Tensor out = empty(shape(), target, device());
    cuda::cast(src.raw_data(), static_cast<int>(src.dtype()), out.raw_data(), static_cast<int>(target),
               numel());
    return out;
  }
#endif
  BYOL_CHECK(device().is_cpu(), "Tensor::to(", dtype_name(target), "): casting ", describe(),
             " is only available on the CPU in this build; copy it to the CPU first");
  Tensor out = empty(shape(), target);
  Tensor src = contiguous();
  dispatch_any(dtype(), [&](auto stag) {
    using S = decltype(stag);
    dispatch_any(target, [&](auto dtag) {
      using D = decltype(dtag);
      const S* s = src.data<S>();
      D* d = out.data<D>();
      const int64_t n = src.numel();
#pragma omp parallel for simd schedule(static) if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) d[i] = cast_element<D>(s[i]);
    });
  });
  return out;
}

void Tensor::copy_(const Tensor& src) const {
  BYOL_CHECK(src.shape() == shape(), "Tensor::copy_: source ", src.describe(), " does not match destination ",
             describe());
  BYOL_CHECK(src.dtype() == dtype(), "Tensor::copy_: source ", src.describe(),
             " has another dtype than destination ", describe(), " (use to(dtype) to cast)");
  size_t bytes = numel() * dtype_size(dtype());
  if (device().is_cpu() && src.device().is_cpu()) {
    if (is_contiguous() && src.is_contiguous()) {
      if (bytes) std::memmove(raw_data(), src.raw_data(), bytes);
      return;
    }
    size_t es = dtype_size(dtype());
    const char* s = static_cast<const char*>(src.storage()->data());
    char* d = static_cast<char*>(storage()->data());
    std::vector<int64_t> src_offsets;
    src_offsets.reserve(numel());
    for_each_offset(src.shape(), src.strides(), src.offset(),
                    [&](int64_t, int64_t off) { src_offsets.push_back(off); });
    for_each_offset(shape(), strides(), offset(),
                    [&](int64_t i, int64_t off) { std::memcpy(d + off * es, s + src_offsets[i] * es, es); });
    return;
  }
  BYOL_CHECK(is_contiguous() && src.is_contiguous(),
             "Tensor::copy_: copies between devices need "
             "contiguous tensors (",
             src.describe(), " -> ", describe(), ")");
  if (bytes == 0) return;
  if (device().is_cuda() && src.device().is_cpu()) {
    cuda_copy_to_device(raw_data(), src.raw_data(), bytes, device().index);
  } else if (device().is_cpu() && src.device().is_cuda()) {
    cuda_copy_to_host(raw_data(), src.raw_data(), bytes, src.device().index);
  } else {
    BYOL_CHECK(device() == src.device(), "Tensor::copy_: copies between two different GPUs (", src.describe(),
               " -> ", describe(), ") are not supported");
    cuda_copy_device_to_device(raw_data(), src.raw_data(), bytes, device().index);
  }
}

void Tensor::zero_() const {
  if (device().is_cuda()) {
    BYOL_CHECK(is_contiguous(), "Tensor::zero_: ", describe(), " is not contiguous");
    cuda_memset_zero(raw_data(), numel() * dtype_size(dtype()), device().index);
    return;
  }
  fill_(0.0);
}

void Tensor::fill_(double value) const {
  if (device().is_cuda()) {
    // float32 / float64 (every training-time fill, e.g. the backward seed): a kernel on the compute
    // stream. Other dtypes, or strided views: through the host, which waits for the GPU.
    if ((dtype() == DType::f32 || dtype() == DType::f64) && is_contiguous()) {
      cuda_fill_floating(raw_data(), dtype() == DType::f64, value, numel(), device().index);
      return;
    }
    Tensor host = full(shape(), value, dtype());
    copy_(host);
    return;
  }
  dispatch_any(dtype(), [&](auto tag) {
    using T = decltype(tag);
    T v = from_double<T>(value);
    T* base = static_cast<T*>(storage()->data());
    if (is_contiguous()) {  // e.g. zeroing the flat gradient buffer every step: a parallel, vectorised loop
      T* p = base + offset();
      const int64_t n = numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
      for (int64_t i = 0; i < n; ++i) p[i] = v;
      return;
    }
    for_each_offset(shape(), strides(), offset(), [&](int64_t, int64_t off) { base[off] = v; });
  });
}

// --- autograd ----------------------------------------------------------------------------------------

bool Tensor::requires_grad() const {
  return impl_ && impl_->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool on) {
  require_defined("set_requires_grad");
  BYOL_CHECK(is_leaf(), "Tensor::set_requires_grad: ", describe(),
             " was computed by an op; only leaf tensors can be marked");
  BYOL_CHECK(!on || is_floating(dtype()), "Tensor::set_requires_grad: ", describe(),
             " is not a floating-point tensor");
  impl_->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  require_defined("grad");
  return Tensor(impl_->grad);
}

void Tensor::set_grad(const Tensor& grad) {
  require_defined("set_grad");
  if (grad.defined()) {
    BYOL_CHECK(grad.shape() == shape() && grad.dtype() == dtype() && grad.device() == device(),
               "Tensor::set_grad: gradient ", grad.describe(), " does not match ", describe());
  }
  impl_->grad = grad.impl_ptr();
}

void Tensor::clear_grad() {
  require_defined("clear_grad");
  impl_->grad.reset();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return impl_ ? impl_->grad_fn : none;
}

void Tensor::backward(const Tensor& seed) const {
  require_defined("backward");
  run_backward(*this, seed);
}

}  // namespace byol
