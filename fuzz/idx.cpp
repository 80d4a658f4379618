// Fuzz target: data::load_idx (data/dataset.h). The input is the images file, optionally followed by
// kSplit and a labels file (fuzz_util.h); plain or gzip, as the reader sniffs.
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  const std::vector<std::string> parts = fuzz::split_input(data, size);
  const std::string images = fuzz::write_scratch("images-idx3-ubyte", parts[0]);
  const std::string labels = parts.size() > 1 ? fuzz::write_scratch("labels-idx1-ubyte", parts[1]) : "";
  fuzz::expect_byol_error([&] {
    const auto d = data::load_idx(images, labels, 10);
    BYOL_FUZZ_CHECK(d->num_classes() == (labels.empty() ? 0 : 10), d->describe());
    fuzz::check_dataset(*d);
  });
  return 0;
}
