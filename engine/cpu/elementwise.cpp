// Elementwise ops and full reductions on the CPU; parallel only when the tensor is large enough to
// pay for waking the OpenMP team. relu and add also take bf16 storage (float math, one rounding).
#include "engine/math/elementwise.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/dtype.h"

namespace byol::cpu {

constexpr int64_t kParallelMin = 1 << 15;

template <class T>
void relu_forward(const T* x, T* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = from_compute<T>(math::relu(to_compute(x[i])));
}

template <class T>
void relu_backward(const T* y, const T* dy, T* dx, int64_t n) {
  // y > 0 exactly where x > 0, so the output serves as the saved tensor.
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    dx[i] = from_compute<T>(math::relu_backward(to_compute(y[i]), to_compute(dy[i])));
}

template <class T>
void add(const T* a, const T* b, T* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = from_compute<T>(to_compute(a[i]) + to_compute(b[i]));
}

template <class T>
void add_inplace(T* y, const T* x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = from_compute<T>(to_compute(y[i]) + to_compute(x[i]));
}

template <class T>
void scale(const T* x, double alpha, T* y, int64_t n) {
  const T a = static_cast<T>(alpha);
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * a;
}

template <class T>
void sum(const T* x, int64_t n, double factor, T* out) {
  double s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) s += x[i];
  *out = static_cast<T>(factor * s);
}

template <class T>
void fill_from_scalar(T* y, const T* scalar, double factor, int64_t n) {
  const T v = static_cast<T>(factor * static_cast<double>(*scalar));
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = v;
}

#define BYOL_INSTANTIATE_ELEMENTWISE(T)                            \
  template void relu_forward<T>(const T*, T*, int64_t);            \
  template void relu_backward<T>(const T*, const T*, T*, int64_t); \
  template void add<T>(const T*, const T*, T*, int64_t);           \
  template void add_inplace<T>(T*, const T*, int64_t);             \
  template void scale<T>(const T*, double, T*, int64_t);           \
  template void sum<T>(const T*, int64_t, double, T*);             \
  template void fill_from_scalar<T>(T*, const T*, double, int64_t);
BYOL_INSTANTIATE_ELEMENTWISE(float)
BYOL_INSTANTIATE_ELEMENTWISE(double)
// bf16 activations (math in float, one rounding per result): what batch norm's ReLU and autograd's sums of
// gradients need.
template void relu_forward<bf16>(const bf16*, bf16*, int64_t);
template void relu_backward<bf16>(const bf16*, const bf16*, bf16*, int64_t);
template void add<bf16>(const bf16*, const bf16*, bf16*, int64_t);
template void add_inplace<bf16>(bf16*, const bf16*, int64_t);

}  // namespace byol::cpu
