// BYOL's projector and predictor: (Linear(bias) -> BN -> ReLU) x (depth - 1) -> Linear(no bias)
// (depth 2, 4096 hidden and 256 out in the paper). Parameter names follow an nn.Sequential: at depth 2,
// name.0 (linear), name.1 (batch norm), name.3 (output linear); each further hidden block adds three indices.
#pragma once

#include <memory>
#include <vector>

#include "models/module.h"

namespace byol::models {

class MlpHead {
 public:
  // depth: the number of linear layers, >= 1 (1: a single linear map, no batch norm).
  MlpHead(ParamRegistry& reg, const std::string& name, int64_t in, int64_t hidden, int64_t out,
          int depth = 2);
  MlpHead(const MlpHead&) = delete;
  MlpHead& operator=(const MlpHead&) = delete;
  Tensor forward(const Tensor& x, const ForwardContext& ctx) const;

 private:
  // Owned through pointers: the registry keeps the address of every parameter slot.
  std::vector<std::unique_ptr<Linear>> hidden_fc_;
  std::vector<std::unique_ptr<BatchNorm>> hidden_bn_;
  std::unique_ptr<Linear> out_fc_;
};

}  // namespace byol::models
