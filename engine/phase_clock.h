// Where a training step's time goes: named phases between marks, on the CPU by the wall clock, on a GPU
// by CUDA events on the compute stream (recorded without waiting, so a marked step is queued like an
// unmarked one; the elapsed times are read, with one wait, only by totals()).
//
//   PhaseClock clock(device);
//   learner.set_phase_clock(&clock);      // Learner::step marks forward, backward, optimizer, probe
//   ... steps ...
//   for (auto& [phase, seconds] : clock.totals()) ...
//
// start() begins timing (again: the time since the previous mark is not counted); mark(name) ends the
// phase `name` there (it began at the previous mark or start()); a name marked again (the next step, the
// micro-batches of gradient accumulation) adds to its total. totals() lists the phases in the order they
// first ended, with their seconds summed since the last reset(); call start() again after it.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/dtype.h"

namespace byol {

class PhaseClock {
 public:
  explicit PhaseClock(Device device);
  ~PhaseClock();
  PhaseClock(const PhaseClock&) = delete;
  PhaseClock& operator=(const PhaseClock&) = delete;

  Device device() const { return device_; }
  void start();
  void mark(const char* phase);
  // Seconds per phase since the last reset, in first-ended order (waits for the device once).
  std::vector<std::pair<std::string, double>> totals();
  void reset();

 private:
  struct Impl;
  void push(int phase);
  Device device_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace byol
