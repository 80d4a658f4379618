// Fuzz target: byol::load_safetensors (engine/io/safetensors.h) on the input as a file.
// Accepted files: every tensor a CPU view inside its storage, names unique, lookups by name agree.
#include "engine/io/safetensors.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  const std::string path = fuzz::write_scratch("in.safetensors", data, size);
  fuzz::expect_byol_error([&] {
    const SafetensorsFile f = load_safetensors(path);
    BYOL_FUZZ_CHECK(f.size() == f.names().size(), f.size(), " tensors");
    for (const auto& [name, t] : f.tensors()) {
      fuzz::check_tensor(t, name);
      BYOL_FUZZ_CHECK(f.contains(name) && f.get(name).raw_data() == t.raw_data(), "lookup of '", name, "'");
    }
    for (const auto& [key, value] : f.metadata()) BYOL_FUZZ_CHECK(f.metadata_value(key) == value, key);
  });
  return 0;
}
