// Fuzz target: byol::eval::load_encoder (byol/evaluation.h) on the input as a file, without a
// configuration (checkpoints and exported encoders say theirs) and with fuzz::tiny_encoder() (torchvision
// files need it; the others must agree with it). Accepted files: every parameter and statistic a view
// inside its buffer, as many loaded as the encoder has, and a forward pass of one 32x32 image giving
// [1, out_features].
#include "byol/evaluation.h"
#include "engine/autograd.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/tiny_configs.h"

namespace {

void check_loaded(const byol::eval::LoadedEncoder& e) {
  using namespace byol;
  BYOL_FUZZ_CHECK(e.registry && e.encoder, "kind ", e.kind);
  const int64_t entries = int64_t(e.registry->param_entries().size() + e.registry->stat_entries().size());
  BYOL_FUZZ_CHECK(e.loaded == entries, e.loaded, " tensors loaded for ", entries, " entries (", e.kind, ")");
  for (const auto& p : e.registry->param_entries()) fuzz::check_tensor(*p.slot, p.name);
  for (const auto& s : e.registry->stat_entries()) fuzz::check_tensor(*s.slot, s.name);
  std::mt19937_64 gen(0);
  NoGradGuard no_grad;
  const Tensor y = e.encoder->forward(Tensor::randn({1, 32, 32, 3}, gen), {false, {}, 1});
  BYOL_FUZZ_CHECK(y.shape() == Shape({1, e.encoder->out_features()}), y.describe());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  const std::string path = fuzz::write_scratch("in.safetensors", data, size);
  fuzz::expect_byol_error([&] { check_loaded(eval::load_encoder({path, std::nullopt, 0})); });
  fuzz::expect_byol_error([&] { check_loaded(eval::load_encoder({path, fuzz::tiny_encoder(), 0})); });
  return 0;
}
