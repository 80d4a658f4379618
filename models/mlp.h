// BYOL's projector and predictor: Linear(bias) -> BN -> ReLU -> Linear(no bias)
// (4096 hidden and 256 out in the paper). Parameter names follow an nn.Sequential: name.0 (linear),
// name.1 (batch norm), name.3 (output linear).
#pragma once

#include "models/module.h"

namespace byol::models {

class MlpHead {
 public:
  MlpHead(ParamRegistry& reg, const std::string& name, int64_t in, int64_t hidden, int64_t out);
  MlpHead(const MlpHead&) = delete;
  MlpHead& operator=(const MlpHead&) = delete;
  Tensor forward(const Tensor& x, const ForwardContext& ctx) const;

 private:
  Linear fc1_;
  BatchNorm bn_;
  Linear fc2_;
};

}  // namespace byol::models
