// Tensor: a typed, shaped, strided view of a shared Storage on one device, plus its autograd state.
//
// Conventions:
//  - Activations are NHWC ([N, H, W, C]); conv filters are KRSC ([K, R, S, C]); MLP activations are
//    [N, C]. Channels are always the innermost dimension, so batch norm sees every layout as [M, C].
//  - Strides and offsets are in elements. Views (slice_rows, view, a parameter's window into a flat
//    buffer) share storage; ops take contiguous inputs and write fresh contiguous outputs.
//  - Tensor is a cheap handle (a shared_ptr); copying it never copies data. clone() does.
//  - A default-constructed Tensor is "undefined" (defined() == false): the value of an absent optional
//    argument such as a linear layer's bias, or of a gradient that was never computed.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/storage.h"

namespace byol {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

struct Node;
struct TensorImpl;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // --- factories -------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = Device::cpu());
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  // Normal(mean, std) / Uniform[lo, hi) from the caller's generator, computed in double then cast.
  static Tensor randn(const Shape& shape, std::mt19937_64& gen, DType dtype = DType::f32, double mean = 0.0,
                      double std = 1.0);
  static Tensor uniform(const Shape& shape, std::mt19937_64& gen, double lo, double hi,
                        DType dtype = DType::f32);

  // --- metadata --------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  int64_t offset() const;
  bool is_contiguous() const;
  const std::string& name() const;
  Tensor& set_name(std::string name);
  std::string describe() const;  // "'name' f32[2, 3] on cpu", for error messages

  // --- data ------------------------------------------------------------------------------------
  void* raw_data() const;  // start of this view (host or device pointer)
  template <class T>
  T* data() const;  // checks the dtype
  template <class T>
  std::vector<T> to_vector() const;  // copies to host (any device), contiguous
  double item() const;               // one-element tensor as double
  const std::shared_ptr<Storage>& storage() const;

  // --- views and copies (no autograd; the ops in engine/ops.h record gradients) ------------------
  Tensor view(const Shape& shape) const;                    // same elements, new shape; contiguous only
  Tensor slice_rows(int64_t start, int64_t end) const;      // rows [start, end) of dim 0, a view
  Tensor window(int64_t offset, const Shape& shape) const;  // contiguous view at element offset
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor detach() const;  // same data, no autograd history and no gradient (a stop-gradient)
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;  // cast (CPU); bf16 rounds to nearest even
  // In-place writes change the data, not the handle, so they are const like every other accessor.
  void copy_(const Tensor& src) const;  // elementwise copy, same shape and dtype, any devices
  void zero_() const;
  void fill_(double value) const;

  // --- autograd --------------------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on);  // leaves only
  Tensor grad() const;                 // undefined until a backward pass reaches this leaf
  // Gradient storage supplied by the caller (a view into a flat gradient buffer). backward()
  // accumulates into it with +=; zero it before each step.
  void set_grad(const Tensor& grad);
  void clear_grad();
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const { return grad_fn() == nullptr; }
  // Seeds backward with `seed` (default: 1 for a one-element tensor) and frees the graph afterwards.
  void backward(const Tensor& seed = Tensor()) const;

  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  void require_defined(const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;
  Shape shape, strides;
  DType dtype = DType::f32;
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<Node> grad_fn;
  std::string name;
};

Shape contiguous_strides(const Shape& shape);

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  BYOL_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
             "Tensor::from_vector: ", values.size(), " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>::value);
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

template <class T>
T* Tensor::data() const {
  require_defined("data");
  BYOL_CHECK(dtype() == dtype_of<T>::value, "tensor ", describe(), ": accessed as ",
             dtype_name(dtype_of<T>::value), ", but its dtype is ", dtype_name(dtype()));
  return static_cast<T*>(raw_data());
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor host = to(Device::cpu()).contiguous();
  const T* p = host.data<T>();
  return std::vector<T>(p, p + host.numel());
}

}  // namespace byol
