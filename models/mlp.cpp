#include "models/mlp.h"

namespace byol::models {

MlpHead::MlpHead(ParamRegistry& reg, const std::string& name, int64_t in, int64_t hidden, int64_t out)
    : fc1_(reg, name + ".0", in, hidden, true),
      bn_(reg, name + ".1", hidden),
      fc2_(reg, name + ".3", hidden, out, false) {}

Tensor MlpHead::forward(const Tensor& x, const ForwardContext& ctx) const {
  return fc2_.forward(ops::relu(bn_.forward(fc1_.forward(x), ctx)));
}

}  // namespace byol::models
