#include "byol/schedules.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "engine/common.h"

namespace byol {

namespace {
// (1 + cos(pi * k / K)) / 2 with k clamped to [0, K].
double cosine_decay(int64_t step, int64_t steps) {
  if (steps <= 0) return 0.0;
  const double k = static_cast<double>(std::clamp<int64_t>(step, 0, steps));
  return 0.5 * (1.0 + std::cos(std::numbers::pi * k / static_cast<double>(steps)));
}
}  // namespace

// [byol:lr]
double scaled_learning_rate(double base_lr, int64_t batch_size) {
  BYOL_CHECK(batch_size > 0, "learning rate: batch size must be positive, got ", batch_size);
  return base_lr * static_cast<double>(batch_size) / 256.0;
}

double lr_at(int64_t step, int64_t total_steps, int64_t warmup_steps, double scaled_lr) {
  BYOL_CHECK(total_steps > 0 && warmup_steps >= 0 && warmup_steps <= total_steps,
             "learning rate: expected 0 <= warmup_steps <= total_steps and total_steps > 0, got warmup ",
             warmup_steps, " of ", total_steps);
  if (step < warmup_steps) return scaled_lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
  return scaled_lr * cosine_decay(step - warmup_steps, total_steps - warmup_steps);
}

// [byol:tau]
double tau_at(int64_t step, int64_t total_steps, double tau_base) {
  BYOL_CHECK(total_steps > 0, "tau: total_steps must be positive, got ", total_steps);
  BYOL_CHECK(tau_base >= 0 && tau_base <= 1, "tau: tau_base must be in [0, 1], got ", tau_base);
  return 1.0 - (1.0 - tau_base) * cosine_decay(step, total_steps);
}

// [byol:presets]
const Preset& preset_for_epochs(int epochs) {
  static const Preset presets[] = {
      {40, 0.45, 1e-6, 0.97},
      {100, 0.45, 1e-6, 0.99},
      {300, 0.3, 1e-6, 0.99},
      {1000, 0.2, 1.5e-6, 0.996},
  };
  for (const Preset& p : presets)
    if (p.epochs == epochs) return p;
  BYOL_FAIL("no BYOL preset for ", epochs, " epochs (the paper's presets are 40, 100, 300 and 1000)");
}

}  // namespace byol
