// JPEG (libjpeg-turbo) and PNG (libpng simplified API) codecs, and whole-file reads (zlib for .gz).
#include "data/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/common.h"

#if BYOL_WITH_JPEG
#include <jpeglib.h>

#include <csetjmp>
#endif
#if BYOL_WITH_PNG
#include <png.h>
#endif

namespace byol::data {

ImageFormat sniff_format(const uint8_t* b, size_t n) {
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return ImageFormat::jpeg;
  if (n >= 8 && b[0] == 0x89 && b[1] == 'P' && b[2] == 'N' && b[3] == 'G' && b[4] == 0x0D && b[5] == 0x0A &&
      b[6] == 0x1A && b[7] == 0x0A)
    return ImageFormat::png;
  return ImageFormat::unknown;
}

namespace {
std::atomic<int64_t> g_max_image_pixels{kDefaultMaxImagePixels};
}  // namespace

void set_max_image_pixels(int64_t pixels) {
  BYOL_CHECK(pixels >= 1, "set_max_image_pixels: expected >= 1, got ", pixels);
  g_max_image_pixels.store(pixels);
}

int64_t max_image_pixels() {
  return g_max_image_pixels.load();
}

namespace {

// The header's size against the limit: an error naming the file, before anything is allocated for it.
[[maybe_unused]] void check_image_pixels(uint64_t width, uint64_t height, const std::string& source,
                                         const char* format) {
  const int64_t limit = max_image_pixels();
  BYOL_CHECK(width * height <= uint64_t(limit), "decode_image: ", source, ": the ", format, " header claims ",
             width, "x", height, " = ", width * height, " pixels, more than the limit of ", limit,
             " (data::set_max_image_pixels)");
}

}  // namespace

bool jpeg_supported() {
  return BYOL_WITH_JPEG != 0;
}
bool png_supported() {
  return BYOL_WITH_PNG != 0;
}

#if BYOL_WITH_JPEG
namespace {

// libjpeg reports errors through callbacks; error_exit must not return, so it longjmps back into
// decode_jpeg_into, which then throws. Warnings (corrupt or truncated data, which libjpeg would
// otherwise repair silently) take the same way out.
struct JpegErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

void jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_fail(cinfo);  // a warning: the data is corrupt or truncated
}

// One decompressor per thread, reused across images (creating one costs more than decoding a 32x32
// CIFAR image).
struct JpegDecoder {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  JpegDecoder() {
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_fail;
    err.pub.emit_message = jpeg_message;
    jpeg_create_decompress(&cinfo);
  }
  ~JpegDecoder() { jpeg_destroy_decompress(&cinfo); }
  JpegDecoder(const JpegDecoder&) = delete;
  JpegDecoder& operator=(const JpegDecoder&) = delete;
};

enum class JpegResult { ok, failed, too_large };

// Returns failed with dec.err.message set, or too_large (the header's width x height, in *width and
// *height, exceed max_pixels) before jpeg_start_decompress allocates anything for the image. Nothing with
// a destructor lives in this frame, so the longjmp skips no C++ cleanup.
JpegResult decode_jpeg_into(JpegDecoder& dec, const uint8_t* bytes, size_t size, int min_side,
                            int64_t max_pixels, std::vector<uint8_t>& out, int64_t* height, int64_t* width) {
  jpeg_decompress_struct* cinfo = &dec.cinfo;
  if (setjmp(dec.err.jump)) {
    jpeg_abort_decompress(cinfo);
    return JpegResult::failed;
  }
  jpeg_mem_src(cinfo, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(cinfo, TRUE);
  if (uint64_t(cinfo->image_width) * cinfo->image_height > uint64_t(max_pixels)) {
    *height = cinfo->image_height;
    *width = cinfo->image_width;
    jpeg_abort_decompress(cinfo);
    return JpegResult::too_large;
  }
  const bool cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
  cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  cinfo->scale_num = 8;
  cinfo->scale_denom = 8;
  if (min_side > 0) {
    const unsigned short_side =
        cinfo->image_width < cinfo->image_height ? cinfo->image_width : cinfo->image_height;
    for (unsigned m = 1; m < 8; ++m) {
      if ((short_side * m + 7) / 8 >= static_cast<unsigned>(min_side)) {
        cinfo->scale_num = m;
        break;
      }
    }
  }
  jpeg_start_decompress(cinfo);
  const int w = static_cast<int>(cinfo->output_width), h = static_cast<int>(cinfo->output_height);
  const int in_channels = cinfo->output_components;
  out.resize(size_t(w) * h * (cmyk ? 4 : 3));
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW rows[8];
    const int row0 = static_cast<int>(cinfo->output_scanline);
    for (int r = 0; r < 8; ++r)
      rows[r] = out.data() + size_t(row0 + (row0 + r < h ? r : 0)) * w * in_channels;
    jpeg_read_scanlines(cinfo, rows, 8);
  }
  jpeg_finish_decompress(cinfo);
  if (cmyk) {  // Adobe writes inverted CMYK: r = c * k / 255
    for (size_t i = 0, n = size_t(w) * h; i < n; ++i) {
      const uint8_t* p = out.data() + 4 * i;
      uint8_t* q = out.data() + 3 * i;
      const unsigned k = p[3];
      const uint8_t r = static_cast<uint8_t>((p[0] * k + 127) / 255),
                    g = static_cast<uint8_t>((p[1] * k + 127) / 255),
                    b = static_cast<uint8_t>((p[2] * k + 127) / 255);
      q[0] = r, q[1] = g, q[2] = b;
    }
    out.resize(size_t(w) * h * 3);
  }
  *height = h;
  *width = w;
  return JpegResult::ok;
}

}  // namespace
#endif

namespace {

ImageView decode(const uint8_t* bytes, size_t size, std::vector<uint8_t>& out, const std::string& source,
                 int min_side) {
  const ImageFormat format = sniff_format(bytes, size);
  if (format == ImageFormat::jpeg) {
#if BYOL_WITH_JPEG
    thread_local JpegDecoder decoder;
    int64_t h = 0, w = 0;
    const JpegResult result =
        decode_jpeg_into(decoder, bytes, size, min_side, max_image_pixels(), out, &h, &w);
    if (result == JpegResult::failed)
      BYOL_FAIL("decode_image: ", source, ": corrupt or truncated JPEG (libjpeg: ", decoder.err.message, ")");
    if (result == JpegResult::too_large) check_image_pixels(uint64_t(w), uint64_t(h), source, "JPEG");
    return {out.data(), int(h), int(w), 3};
#else
    (void)min_side;
    BYOL_FAIL("decode_image: ", source,
              ": is a JPEG, but this build has no JPEG support (libjpeg-turbo was not ",
              "found at configure time; install libjpeg62-turbo-dev and reconfigure)");
#endif
  }
  if (format == ImageFormat::png) {
#if BYOL_WITH_PNG
    png_image img;
    std::memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, bytes, size))
      BYOL_FAIL("decode_image: ", source, ": corrupt PNG (libpng: ", img.message, ")");
    try {
      check_image_pixels(img.width, img.height, source, "PNG");
    } catch (...) {
      png_image_free(&img);
      throw;
    }
    img.format = PNG_FORMAT_RGB;
    out.resize(size_t(img.width) * img.height * 3);  // PNG_IMAGE_SIZE computes in 32 bits and wraps
    if (!png_image_finish_read(&img, nullptr, out.data(), 0, nullptr)) {
      const std::string message = img.message;
      png_image_free(&img);
      BYOL_FAIL("decode_image: ", source, ": corrupt or truncated PNG (libpng: ", message, ")");
    }
    return {out.data(), static_cast<int>(img.height), static_cast<int>(img.width), 3};
#else
    BYOL_FAIL("decode_image: ", source,
              ": is a PNG, but this build has no PNG support (libpng was not found at ",
              "configure time; install libpng-dev and reconfigure)");
#endif
  }
  BYOL_FAIL("decode_image: ", source,
            ": expected a JPEG (starts with FF D8 FF) or a PNG (starts with 89 'PNG'), ", "got ",
            size < 4 ? "a file of " + std::to_string(size) + " bytes" : "unknown leading bytes");
}

}  // namespace

ImageView decode_image(const uint8_t* bytes, size_t size, std::vector<uint8_t>& out,
                       const std::string& source, int min_side) {
  return with_context(cat("decode_image: ", source), [&] { return decode(bytes, size, out, source, min_side); });
}

std::vector<uint8_t> encode_jpeg(const ImageView& image, int quality) {
  BYOL_CHECK(image.channels == 1 || image.channels == 3, "encode_jpeg: expected 1 or 3 channels, got ",
             image.channels);
#if BYOL_WITH_JPEG
  jpeg_compress_struct cinfo;
  JpegErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = jpeg_fail;
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::free(buffer);
    BYOL_FAIL("encode_jpeg: libjpeg: ", err.message);
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(image.width);
  cinfo.image_height = static_cast<JDIMENSION>(image.height);
  cinfo.input_components = image.channels;
  cinfo.in_color_space = image.channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row =
        const_cast<uint8_t*>(image.data) + size_t(cinfo.next_scanline) * image.width * image.channels;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> result(buffer, buffer + size);
  std::free(buffer);
  return result;
#else
  (void)quality;
  BYOL_FAIL("encode_jpeg: this build has no JPEG support (libjpeg-turbo was not found at configure time)");
#endif
}

std::vector<uint8_t> encode_png(const ImageView& image) {
  BYOL_CHECK(image.channels == 1 || image.channels == 3, "encode_png: expected 1 or 3 channels, got ",
             image.channels);
#if BYOL_WITH_PNG
  png_image img;
  std::memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(image.width);
  img.height = static_cast<png_uint_32>(image.height);
  img.format = image.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&img, nullptr, &size, 0, image.data, 0, nullptr))
    BYOL_FAIL("encode_png: libpng: ", img.message);
  std::vector<uint8_t> result(size);
  if (!png_image_write_to_memory(&img, result.data(), &size, 0, image.data, 0, nullptr))
    BYOL_FAIL("encode_png: libpng: ", img.message);
  result.resize(size);
  return result;
#else
  BYOL_FAIL("encode_png: this build has no PNG support (libpng was not found at configure time)");
#endif
}

void read_file_into(const std::string& path, std::vector<uint8_t>& out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) BYOL_FAIL("read_file: cannot open '", path, "': ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    BYOL_FAIL("read_file: '", path, "' is not a regular file");
  }
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      BYOL_FAIL("read_file: error reading '", path, "' after ", done, " of ", out.size(), " bytes",
                n < 0 ? std::string(": ") + std::strerror(e) : std::string());
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::vector<uint8_t> bytes;
  read_file_into(path, bytes);
  return bytes;
}

std::vector<uint8_t> read_file_maybe_gz(const std::string& path) {
  // gzread passes files without the gzip magic number through unchanged.
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) BYOL_FAIL("read_file: cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  int n;
  while ((n = gzread(f, chunk, sizeof chunk)) > 0) bytes.insert(bytes.end(), chunk, chunk + n);
  if (n < 0) {
    int code = 0;
    const std::string message = gzerror(f, &code);
    gzclose(f);
    BYOL_FAIL("read_file: '", path, "' is not a valid gzip file (zlib: ", message, ")");
  }
  const int close_code = gzclose(f);
  if (close_code != Z_OK) BYOL_FAIL("read_file: '", path, "' is truncated or not a valid gzip file");
  return bytes;
}

void write_file(const std::string& path, const void* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) BYOL_FAIL("write_file: cannot create '", path, "': ", std::strerror(errno));
  const size_t written = std::fwrite(data, 1, size, f);
  const bool failed = written != size || std::fclose(f) != 0;
  if (failed) BYOL_FAIL("write_file: error writing '", path, "' (", written, " of ", size, " bytes)");
}

}  // namespace byol::data
