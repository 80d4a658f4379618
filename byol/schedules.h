// BYOL's schedules, as the official code computes them at global step k of K (k from 0).
//
//   lr(k)  = base_lr * batch / 256 * k / warmup                        for k < warmup
//          = base_lr * batch / 256 * (1 + cos(pi (k - warmup) / (K - warmup))) / 2   after
//   tau(k) = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2              (sec. 3.2 of the paper)
// Both clamp k at K, so a run that goes past its planned length keeps lr 0 and tau 1.
#pragma once

#include <cstdint>

namespace byol {

double scaled_learning_rate(double base_lr, int64_t batch_size);  // base * batch / 256
double lr_at(int64_t step, int64_t total_steps, int64_t warmup_steps, double scaled_lr);
double tau_at(int64_t step, int64_t total_steps, double tau_base);

// The paper's presets by pretraining length (epochs: base lr, weight decay, tau_base); warmup is 10 epochs.
struct Preset {
  int epochs;
  double base_lr;
  double weight_decay;
  double tau_base;
};
constexpr int kWarmupEpochs = 10;
const Preset& preset_for_epochs(int epochs);  // 40, 100, 300 or 1000; anything else is an error

}  // namespace byol
