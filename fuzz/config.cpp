// Fuzz target: byol-pretrain's TOML configuration (apps/pretrain_config.h): load_config on the input as a
// file (and each further part after kSplit, fuzz_util.h, as a --set override), then validate. An accepted
// configuration must survive its own round trip: to_toml's text loads and validates again and writes the same
// text (finding 5 of issue 14: strings with quotes or newlines made the written config.toml unreadable).
#include "apps/pretrain_config.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  const std::vector<std::string> parts = fuzz::split_input(data, size);
  const std::string path = fuzz::write_scratch("config.toml", parts[0]);
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());
  fuzz::expect_byol_error([&] {
    apps::PretrainConfig cfg;
    apps::load_config(cfg, path, overrides);
    apps::validate(cfg);
    const std::string text = apps::to_toml(cfg);
    const std::string again_path = fuzz::write_scratch("again.toml", text);
    apps::PretrainConfig again;
    try {
      apps::load_config(again, again_path, {});
      apps::validate(again);
    } catch (const Error& e) {
      fuzz::finding("the written configuration does not load again", cat(e.what(), "\n--- written:\n", text));
    }
    BYOL_FUZZ_CHECK(apps::to_toml(again) == text, "round trip changed the configuration:\n", text, "\n---\n",
                    apps::to_toml(again));
  });
  return 0;
}
