// Compiles every shared per-element formula for the device, so a CPU-only change that makes one of
// them host-only (std:: calls without device overloads, exceptions, ...) breaks the CUDA build in CI
// rather than the first GPU run. Nothing here is launched; the CUDA kernels that use these formulas
// live beside this file's folder, one file per family.
#include "engine/dtype.h"
#include "engine/math/batch_norm.h"
#include "engine/math/byol_loss.h"
#include "engine/math/elementwise.h"

namespace byol::math {

__device__ float device_compile_check_float(float x, float g) {
  float r = relu(x) + relu_backward(x, g);
  r += bn_normalize(x, 0.5f, 2.0f, g, 0.1f) + bn_backward_dx(g, x, 8.0f, 1.0f, 2.0f, 1.5f, 0.7f);
  r += bn_running_update(x, g, 0.9f) + l2_inv_norm(x * x) +
       l2_normalize_backward(g, x, 0.3f, 0.2f, l2_clamped(x));
  r += bf16_to_float(float_to_bf16(r));
  return r;
}

__device__ double device_compile_check_double(double count, double sum, double sum_sq) {
  const BnStats s = bn_stats_from_sums(count, sum, sum_sq, 1e-5);
  const CosineGrad c = cosine_loss_grad(sum, sum_sq, count, 1.0);
  return s.mean + s.invstd + bn_batch_var(count, sum, sum_sq) + c.a_p + c.b_p + c.a_z + c.b_z + c.cos;
}

}  // namespace byol::math
