// Fuzz target: byol::load_checkpoint (byol/checkpoint.h) on the input as a file, into a learner of the
// tests' tiny network with an online probe (fuzz/tiny_configs.h), built once. Accepted files: the step in
// 0..total_steps, every parameter, statistic and optimizer state still a view inside its buffer.
#include "byol/checkpoint.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/tiny_configs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  static Learner learner(test_util::tiny_network(), fuzz::tiny_train());
  const std::string path = fuzz::write_scratch("in.safetensors", data, size);
  fuzz::expect_byol_error([&] {
    const std::map<std::string, std::string> meta = load_checkpoint(path, learner);
    BYOL_FUZZ_CHECK(learner.steps_done() >= 0 && learner.steps_done() <= learner.train_config().total_steps,
                    "step ", learner.steps_done());
    BYOL_FUZZ_CHECK(meta.count("format") == 1, "accepted without a format");
    for (const models::ParamRegistry* reg : {&learner.nets.online, &learner.nets.target}) {
      for (const auto& p : reg->param_entries()) fuzz::check_tensor(*p.slot, p.name);
      for (const auto& s : reg->stat_entries()) fuzz::check_tensor(*s.slot, s.name);
    }
    fuzz::check_tensor(learner.lars.momentum(), "lars momentum");
  });
  return 0;
}
