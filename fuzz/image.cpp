// Fuzz target: data::decode_image (data/image.h), JPEG or PNG as sniffed, at full resolution and with
// JPEG DCT downscaling to a shorter side of at least 8. The pixel limit is 2^22 so that memory stays
// bounded (the default, 2^28 pixels, is 805 MB of RGB). Decoded images: 3 channels, inside `out`.
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace byol;
  static const bool limited = (data::set_max_image_pixels(int64_t(1) << 22), true);
  (void)limited;
  std::vector<uint8_t> out;
  for (int min_side : {0, 8}) {
    fuzz::expect_byol_error([&] {
      const data::ImageView v = data::decode_image(data, size, out, "input", min_side);
      BYOL_FUZZ_CHECK(v.channels == 3, v.channels, " channels");
      fuzz::check_image(v, &out);
    });
  }
  return 0;
}
