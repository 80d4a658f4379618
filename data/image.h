// Images in memory and the JPEG / PNG codecs.
//
// Conventions:
//  - An image is uint8 HWC, rows contiguous, 1 (gray) or 3 (RGB) channels. ImageView does not own its
//    pixels; they live in a dataset (in-memory and memory-mapped datasets hand out views into their
//    own storage) or in a caller's scratch buffer (decoded files).
//  - Decoders always produce RGB: grayscale, palette, 16-bit and alpha images are converted (alpha is
//    composited on black by libpng's simplified API), CMYK JPEGs are converted assuming Adobe's
//    inverted CMYK.
//  - Every decoding failure, including libjpeg warnings such as "premature end of data" (a truncated
//    file, which libjpeg would otherwise pad with gray), is a byol::Error naming the source.
//  - Support for each format is compiled in when CMake found its library (BYOL_WITH_JPEG,
//    BYOL_WITH_PNG); without it, decoding that format throws an error saying so.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace byol::data {

struct ImageView {
  const uint8_t* data = nullptr;  // [height, width, channels]
  int height = 0;
  int width = 0;
  int channels = 0;  // 1 or 3

  int64_t bytes() const { return int64_t(height) * width * channels; }
};

enum class ImageFormat { unknown, jpeg, png };

// From the first bytes (magic numbers), not the file name.
ImageFormat sniff_format(const uint8_t* bytes, size_t size);

bool jpeg_supported();  // this build links libjpeg(-turbo)
bool png_supported();   // this build links libpng

// The most pixels (width x height, as the file's header states them) decode_image accepts. The check
// runs on the header, before the codec allocates anything, so a forged header claiming 100000 x 100000
// is an error naming the file instead of gigabytes of memory. The default, 2^28 (16384 x 16384), is far
// above any image of a real dataset; the setting is process-wide (every loader thread reads it).
constexpr int64_t kDefaultMaxImagePixels = int64_t(1) << 28;
void set_max_image_pixels(int64_t pixels);  // >= 1
int64_t max_image_pixels();

// Decodes a JPEG or PNG held in memory into `out` (resized as needed), returns a view of it (3
// channels), after checking its header against max_image_pixels(). `min_side` > 0 lets the JPEG decoder use
// its DCT scaling (by 1/8 .. 8/8) to produce the smallest image whose shorter side is still at least
// min_side; 0 decodes at full resolution. PNGs are always decoded at full resolution. `source` names the file
// in error messages.
ImageView decode_image(const uint8_t* bytes, size_t size, std::vector<uint8_t>& out,
                       const std::string& source, int min_side = 0);

// Encoders for tests and tools: 1 or 3 channels. JPEG quality 1..100.
std::vector<uint8_t> encode_jpeg(const ImageView& image, int quality = 90);
std::vector<uint8_t> encode_png(const ImageView& image);

// Reads a whole file; errors name the path. read_file_into reuses the caller's buffer.
std::vector<uint8_t> read_file(const std::string& path);
void read_file_into(const std::string& path, std::vector<uint8_t>& out);
// Reads a whole file, gunzipping it when it starts with the gzip magic number (plain files pass through).
std::vector<uint8_t> read_file_maybe_gz(const std::string& path);
void write_file(const std::string& path, const void* data, size_t size);

}  // namespace byol::data
