#include "models/mlp.h"

namespace byol::models {

MlpHead::MlpHead(ParamRegistry& reg, const std::string& name, int64_t in, int64_t hidden, int64_t out,
                 int depth) {
  BYOL_CHECK(depth >= 1, "MLP head '", name, "': depth must be >= 1, got ", depth);
  int64_t width = in;
  for (int l = 0; l + 1 < depth; ++l) {
    hidden_fc_.push_back(std::make_unique<Linear>(reg, cat(name, ".", 3 * l), width, hidden, true));
    hidden_bn_.push_back(std::make_unique<BatchNorm>(reg, cat(name, ".", 3 * l + 1), hidden));
    width = hidden;
  }
  out_fc_ = std::make_unique<Linear>(reg, cat(name, ".", 3 * (depth - 1)), width, out, false);
}

Tensor MlpHead::forward(const Tensor& x, const ForwardContext& ctx) const {
  Tensor h = x;
  for (size_t l = 0; l < hidden_fc_.size(); ++l)
    h = hidden_bn_[l]->forward_relu(hidden_fc_[l]->forward(h, ctx), ctx);
  return out_fc_->forward(h, ctx);
}

}  // namespace byol::models
