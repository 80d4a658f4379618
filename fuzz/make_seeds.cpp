// Writes the fuzz targets' inputs with the project's own writers:
//   make_seeds seeds OUT          valid files, one folder per target: OUT/<target>/* (scripts/fuzz.sh's
//                                 seed corpora, build-fuzz/corpus/)
//   make_seeds regressions OUT    the inputs that broke a reader before issue 14's fixes, one folder per
//                                 target (committed as fuzz/regressions/; every target has at least one)
// Inputs holding several files join them with fuzz::kSplit (fuzz_util.h). The regression inputs are
// small (bytes to a few KB) and each is named after what it forges.
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>

#include "byol/checkpoint.h"
#include "data/packed.h"
#include "engine/io/safetensors.h"
#include "fuzz/fuzz_util.h"
#include "fuzz/tiny_configs.h"

namespace fs = std::filesystem;
using namespace byol;
using Bytes = std::vector<uint8_t>;

namespace {

std::string g_out;  // the output folder

void emit(const std::string& target, const std::string& name, const Bytes& bytes) {
  const fs::path p = fs::path(g_out) / target / name;
  fs::create_directories(p.parent_path());
  data::write_file(p.string(), bytes.data(), bytes.size());
}

Bytes bytes(const std::string& text) {
  return Bytes(text.begin(), text.end());
}

Bytes join(const std::vector<Bytes>& parts) {
  Bytes out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out.insert(out.end(), fuzz::kSplit.begin(), fuzz::kSplit.end());
    out.insert(out.end(), parts[i].begin(), parts[i].end());
  }
  return out;
}

Bytes gzip(const Bytes& in) {
  z_stream z{};
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) BYOL_FAIL("deflateInit2");
  Bytes out(deflateBound(&z, uLong(in.size())) + 32);
  z.next_in = const_cast<Bytef*>(in.data());
  z.avail_in = uInt(in.size());
  z.next_out = out.data();
  z.avail_out = uInt(out.size());
  const int rc = deflate(&z, Z_FINISH);
  deflateEnd(&z);
  BYOL_CHECK(rc == Z_STREAM_END, "gzip: deflate failed");
  out.resize(z.total_out);
  return out;
}

template <class T>
void put_le(Bytes& out, T v) {
  for (size_t i = 0; i < sizeof v; ++i) out.push_back(uint8_t(uint64_t(v) >> (8 * i)));
}
void put_be32(Bytes& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}

// A smooth h x w x c image.
struct Image {
  Bytes pixels;
  int h, w, c;
  data::ImageView view() const { return {pixels.data(), h, w, c}; }
};
Image smooth(int h, int w, int c, int phase = 0) {
  Image im{Bytes(size_t(h) * w * c), h, w, c};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        im.pixels[(size_t(y) * w + x) * c + k] = uint8_t(40 + (3 * y + 5 * x + 60 * k + phase) % 170);
  return im;
}

// A ustar member (type '0' file, '5' folder, 'L' GNU long name, 'x' pax header).
void tar_add(Bytes& tar, const std::string& name, const Bytes& content, char type = '0') {
  uint8_t h[512] = {};
  std::memcpy(h, name.data(), std::min<size_t>(name.size(), 99));
  std::snprintf(reinterpret_cast<char*>(h + 100), 8, "%07o", 0644);
  std::snprintf(reinterpret_cast<char*>(h + 108), 8, "%07o", 0);
  std::snprintf(reinterpret_cast<char*>(h + 116), 8, "%07o", 0);
  std::snprintf(reinterpret_cast<char*>(h + 124), 12, "%011o", unsigned(content.size()));
  std::snprintf(reinterpret_cast<char*>(h + 136), 12, "%011o", 0);
  h[156] = uint8_t(type);
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  std::memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (uint8_t b : h) sum += b;
  std::snprintf(reinterpret_cast<char*>(h + 148), 8, "%06o", sum);
  tar.insert(tar.end(), h, h + 512);
  tar.insert(tar.end(), content.begin(), content.end());
  tar.resize((tar.size() + 511) / 512 * 512, 0);
}
void tar_end(Bytes& tar) {
  tar.resize(tar.size() + 1024, 0);
}

Bytes idx_header(uint32_t magic, const std::vector<uint32_t>& dims) {
  Bytes out;
  put_be32(out, magic);
  for (uint32_t d : dims) put_be32(out, d);
  return out;
}

Bytes pack_header(uint32_t shards, uint64_t count, uint32_t classes) {
  Bytes out = {'B', 'Y', 'O', 'L', 'P', 'A', 'K', '1'};
  put_le<uint32_t>(out, 1), put_le(out, shards), put_le(out, count), put_le(out, classes);
  put_le<uint32_t>(out, 0);
  return out;
}
void put_record(Bytes& out, uint32_t height, uint32_t width, uint32_t channels, uint64_t offset) {
  put_le<uint32_t>(out, 0), put_le(out, height), put_le(out, width), put_le(out, channels);
  put_le(out, offset), put_le<int64_t>(out, -1);
}

// A file written by one of the project's writers, read back.
template <class Write>
Bytes written(const std::string& name, Write&& write) {
  const std::string path = fuzz::scratch_path("make_seeds/" + name);
  write(path);
  return data::read_file(path);
}

std::unique_ptr<Learner> tiny_learner(const NetworkConfig& net) {
  auto learner = std::make_unique<Learner>(net, fuzz::tiny_train());
  std::mt19937_64 gen(3);
  learner->step(Tensor::randn({4, 8, 8, 3}, gen), Tensor::randn({4, 8, 8, 3}, gen),
                Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 0}, {4}));
  return learner;
}

NetworkConfig encoder_network() {  // the encoder target's tiny_encoder() inside a learner
  NetworkConfig net = test_util::tiny_network();
  net.encoder = fuzz::tiny_encoder();
  return net;
}

// --- seeds -------------------------------------------------------------------------------------------

void seeds() {
  // safetensors: every dtype, a 0-d and an empty tensor, metadata; and a file with nothing in it.
  {
    std::mt19937_64 gen(1);
    const NamedTensors tensors = {{"w", Tensor::randn({2, 3}, gen)},
                                  {"d", Tensor::randn({3}, gen, DType::f64)},
                                  {"h", Tensor::randn({2, 2}, gen).to(DType::bf16)},
                                  {"u", Tensor::from_vector(std::vector<uint8_t>{1, 2, 3}, {3})},
                                  {"i", Tensor::from_vector(std::vector<int32_t>{-1, 7}, {2})},
                                  {"l", Tensor::from_vector(std::vector<int64_t>{5}, {})},
                                  {"e", Tensor::zeros({0, 4})}};
    emit("safetensors", "dtypes.safetensors", written("a.safetensors", [&](const std::string& p) {
           save_safetensors(p, tensors, {{"format", "pt"}, {"note", "seed"}});
         }));
    emit("safetensors", "empty.safetensors",
         written("b.safetensors", [&](const std::string& p) { save_safetensors(p, {}); }));
  }
  // checkpoint: the checkpoint target's learner after one step.
  {
    const auto learner = tiny_learner(test_util::tiny_network());
    const Bytes ckpt = written("ckpt.safetensors", [&](const std::string& p) {
      save_checkpoint(p, *learner, {{"data_epoch", "0"}, {"rng", "12345"}});
    });
    emit("checkpoint", "tiny.safetensors", ckpt);
    emit("safetensors", "checkpoint.safetensors", ckpt);
  }
  // encoder: a checkpoint, an exported encoder and a torchvision-named file of tiny_encoder().
  {
    const auto learner = tiny_learner(encoder_network());
    const models::ResNetConfig cfg = fuzz::tiny_encoder();
    emit("encoder", "checkpoint.safetensors",
         written("e1.safetensors", [&](const std::string& p) { save_checkpoint(p, *learner); }));
    emit("encoder", "exported.safetensors", written("e2.safetensors", [&](const std::string& p) {
           export_encoder(p, learner->nets.online, "encoder.", &cfg);
         }));
    emit("encoder", "torchvision.safetensors", written("e3.safetensors", [&](const std::string& p) {
           export_encoder(p, learner->nets.online, "encoder.");
           const SafetensorsFile f = load_safetensors(p);
           NamedTensors tensors(f.tensors().begin(), f.tensors().end());
           tensors.emplace_back("bn1.num_batches_tracked", Tensor::zeros({}, DType::i64));
           tensors.emplace_back("fc.weight", Tensor::zeros({10, 32}));
           tensors.emplace_back("fc.bias", Tensor::zeros({10}));
           save_safetensors(p, tensors);
         }));
  }
  // IDX: 3 images of 4x5 with labels, gzip-compressed, and unlabeled.
  {
    Bytes images = idx_header(0x00000803, {3, 4, 5}), labels = idx_header(0x00000801, {3});
    const Image im = smooth(12, 5, 1);
    images.insert(images.end(), im.pixels.begin(), im.pixels.end());
    labels.insert(labels.end(), {0, 9, 4});
    emit("idx", "labeled", join({images, labels}));
    emit("idx", "labeled-gz", join({gzip(images), gzip(labels)}));
    emit("idx", "unlabeled", images);
  }
  // CIFAR: two records of each format.
  for (const int label_bytes : {1, 2}) {
    Bytes file;
    for (int i = 0; i < 2; ++i) {
      if (label_bytes == 2) file.push_back(uint8_t(3 + i));
      file.push_back(uint8_t(label_bytes == 1 ? 7 + i : 42 + i));
      const Image im = smooth(32, 32, 3, 11 * i);
      for (int c = 0; c < 3; ++c)  // planes R, G, B
        for (int p = 0; p < 1024; ++p) file.push_back(im.pixels[3 * p + c]);
    }
    emit("cifar", label_bytes == 1 ? "cifar10-test_batch.bin" : "cifar100-test.bin", file);
  }
  // STL-10: one image with its label, and unlabeled.
  {
    const Image im = smooth(96, 96, 3);
    emit("stl10", "labeled", join({im.pixels, Bytes{3}}));
    emit("stl10", "unlabeled", im.pixels);
  }
  // packed: byol-pack's writer, labeled (two classes, mixed sizes and channels) and unlabeled.
  for (const bool labeled : {true, false}) {
    const std::string prefix = fuzz::scratch_path(labeled ? "make_seeds/pl" : "make_seeds/pu");
    {
      data::PackWriter w(prefix,
                         labeled ? std::vector<std::string>{"cat", "dog"} : std::vector<std::string>{});
      w.add(smooth(4, 3, 3).view(), labeled ? 1 : -1);
      w.add(smooth(2, 5, 1).view(), labeled ? 0 : -1);
      w.add(smooth(3, 3, 3, 9).view(), labeled ? 1 : -1);
      w.finish();
    }
    emit("packed", labeled ? "labeled" : "unlabeled",
         join({data::read_file(prefix + ".index"), data::read_file(prefix + "-00000.bin")}));
  }
  // JPEG / PNG: RGB and gray, a few sizes.
  {
    emit("image", "rgb.png", data::encode_png(smooth(7, 9, 3).view()));
    emit("image", "gray.png", data::encode_png(smooth(5, 4, 1).view()));
    emit("image", "rgb.jpg", data::encode_jpeg(smooth(16, 24, 3).view(), 85));
    emit("image", "gray.jpg", data::encode_jpeg(smooth(9, 8, 1).view(), 60));
  }
  // Image folders in archives: classes under train/ (a PNG and a JPEG), gzip-compressed, and loose
  // images with a GNU long name and a pax path.
  {
    Bytes tar;
    tar_add(tar, "train/", {}, '5');
    tar_add(tar, "train/cat/", {}, '5');
    tar_add(tar, "train/cat/a.png", data::encode_png(smooth(6, 5, 3).view()));
    tar_add(tar, "train/dog/b.jpg", data::encode_jpeg(smooth(8, 8, 3).view(), 80));
    tar_add(tar, "train/dog/notes.txt", {'h', 'i'});
    tar_end(tar);
    emit("tar", "classes.tar", tar);
    emit("tar", "classes.tar.gz", gzip(tar));
    Bytes loose;
    const std::string long_name = std::string(120, 'n') + ".png";
    tar_add(loose, "././@LongLink", bytes(long_name), 'L');
    tar_add(loose, "truncated-name", data::encode_png(smooth(3, 4, 1).view()));
    const std::string pax = "30 path=pax/c.jpg\n";
    tar_add(loose, "PaxHeader", bytes(pax), 'x');
    tar_add(loose, "c.jpg", data::encode_jpeg(smooth(4, 4, 1).view(), 70));
    tar_end(loose);
    emit("tar", "loose.tar", loose);
  }
  // Configurations: the project's configs/*.toml, and one with --set overrides.
  for (const fs::directory_entry& e : fs::directory_iterator(fs::path(BYOL_SOURCE_DIR) / "configs"))
    if (e.path().extension() == ".toml")
      emit("config", e.path().filename().string(), data::read_file(e.path().string()));
  {
    const std::string text = "[data]\ntrain = \"synthetic:40:4:16\"\nside = 16\n[model]\nstem = \"cifar\"\n";
    emit("config", "overrides",
         join({bytes(text), bytes("train.epochs=3"), bytes("train.warmup_epochs=1"),
               bytes("run.out=runs/x")}));
  }
}

// --- regressions -------------------------------------------------------------------------------------

void regressions() {
  // Issue 14, finding 1: IDX.
  emit("idx", "shape-product-wraps", idx_header(0x00000803, {0x80000000u, 0x80000000u, 4}));  // 16 bytes
  emit("idx", "zero-rows", idx_header(0x00000803, {5, 0, 28}));
  emit("idx", "zero-columns", idx_header(0x00000803, {5, 28, 0}));
  emit("idx", "rows-beyond-int", idx_header(0x00000803, {0, 0xFFFFFFFFu, 1}));
  // Finding 2: packed index (the target's default shard is 16 bytes).
  {
    Bytes name = pack_header(1, 0, 1);
    put_le<uint32_t>(name, 0xFFFFFFFFu);
    emit("packed", "class-name-4g", name);  // 36 bytes
    emit("packed", "count-times-32-wraps", pack_header(1, uint64_t(1) << 59, 0));
    Bytes offset = pack_header(1, 1, 0);
    put_record(offset, 1, 1, 1, ~uint64_t(0));
    emit("packed", "offset-plus-size-wraps", offset);
    Bytes side = pack_header(1, 1, 0);
    put_record(side, 0xFFFFFFFFu, 0xFFFFFFFFu, 3, 3 * (uint64_t(1) << 33) - 3);
    emit("packed", "height-width-channels-wrap", side);
  }
  // Finding 3: image headers claiming more pixels than the file holds (and than the limit).
  {
    const Image im = smooth(8, 8, 1);
    Bytes png = data::encode_png(im.view());  // IHDR: width at 16, height at 20, CRC over 12..28
    for (int at : {16, 20})
      for (int s = 0; s < 4; ++s) png[at + s] = uint8_t(100000u >> (24 - 8 * s));
    const uint32_t crc = uint32_t(crc32(0, png.data() + 12, 17));
    for (int s = 0; s < 4; ++s) png[29 + s] = uint8_t(crc >> (24 - 8 * s));
    emit("image", "png-100000x100000", png);
    Bytes jpg = data::encode_jpeg(im.view(), 90);  // SOF0: FF C0, length, precision, height, width
    size_t sof = 0;
    while (sof + 9 < jpg.size() && !(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0)) ++sof;
    BYOL_CHECK(sof + 9 < jpg.size(), "no SOF0 marker in the encoded JPEG");
    for (size_t at : {sof + 5, sof + 7}) jpg[at] = 0xFF, jpg[at + 1] = 0xDC;
    emit("image", "jpeg-65500x65500", jpg);
    // The same files inside an archive: the limit holds for members too.
    Bytes tar;
    tar_add(tar, "a/big.png", png);
    tar_add(tar, "a/big.jpg", jpg);
    tar_end(tar);
    emit("tar", "members-claiming-huge-images", tar);
  }
  // Finding 4: exported encoders whose encoder_config is out of bounds (one small tensor each).
  {
    const NamedTensors one = {{"conv1.weight", Tensor::zeros({4, 3, 3, 3})}};
    auto encoder = [&](const std::string& name, const std::string& config) {
      emit("encoder", name, written(name, [&](const std::string& p) {
             save_safetensors(p, one,
                              {{"format", checkpoint_names::kEncoderFormat}, {"encoder_config", config}});
           }));
    };
    encoder("blocks-2e9",
            R"({"depth":18,"width":1,"stem":"cifar","base_channels":4,"blocks":[2000000000,1,1,1]})");
    encoder("negative-blocks",
            R"({"depth":18,"width":1,"stem":"cifar","base_channels":4,"blocks":[-1,1,1,1]})");
    encoder("base-channels-times-width-overflows",
            R"({"depth":50,"width":4,"stem":"imagenet","base_channels":4611686018427387904})");
    encoder("depth-2-to-the-32-plus-18", R"({"depth":4294967314,"width":1,"stem":"cifar"})");
    encoder("resnet50-config-in-a-small-file", R"({"depth":50,"width":1,"stem":"imagenet"})");
  }
  // Finding 5: configuration values cast before their range check, infinite epochs, a string that
  // must survive the written config.toml.
  emit("config", "side-4294967328.toml", bytes("[data]\nside = 4294967328\n"));
  emit("config", "epochs-inf.toml", bytes("[train]\nepochs = inf\n"));
  emit("config", "epochs-nan.toml", bytes("[train]\nepochs = nan\n"));
  emit("config", "quotes-and-newline.toml",
       bytes("[data]\ntrain = \"synthetic:40:4:16\"\nknn_train = \"a\\\"b\\nc\"\nknn_test = \"'''x\\\\\"\n"));
  emit("config", "override-side", join({Bytes{}, bytes("data.side=4294967328")}));
  // Finding 6: checkpoint metadata 'step' not a number, out of range, with trailing text, missing; the
  // metadata of a real checkpoint of the target's learner, without its tensors (the step is checked first).
  {
    const Learner learner(test_util::tiny_network(), fuzz::tiny_train());
    const std::string path = fuzz::scratch_path("make_seeds/step.safetensors");
    save_checkpoint(path, learner);
    const std::map<std::string, std::string> meta = load_safetensors(path).metadata();
    for (const auto& [name, step] :
         std::vector<std::pair<std::string, std::string>>{{"step-abc", "abc"},
                                                          {"step-99999999999", "99999999999"},
                                                          {"step-16x", "16x"},
                                                          {"step-minus-1", "-1"},
                                                          {"step-missing", ""}}) {
      std::map<std::string, std::string> m = meta;
      if (step.empty())
        m.erase("step");
      else
        m["step"] = step;
      emit("checkpoint", name, written(name, [&](const std::string& p) { save_safetensors(p, {}, m); }));
    }
  }
  // Finding 7: archive members outside the archive's root.
  {
    const Bytes png = data::encode_png(smooth(2, 2, 1).view());
    for (const auto& [name, member] : std::vector<std::pair<std::string, std::string>>{
             {"member-dot-dot", "../../x.jpg"}, {"member-absolute", "/abs.jpg"}}) {
      Bytes tar;
      tar_add(tar, "c/a.png", png);
      tar_add(tar, member, png);
      tar_end(tar);
      emit("tar", name, tar);
    }
  }
  // Targets without a finding of their own get small forged files of the kinds the unit tests cover.
  {
    Bytes huge_header;
    put_le<uint64_t>(huge_header, ~uint64_t(0));  // header length 2^64 - 1 in an 8-byte file
    emit("safetensors", "header-length-2-to-the-64", huge_header);
    const std::string overlap =
        R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    Bytes file;
    put_le<uint64_t>(file, overlap.size());
    file.insert(file.end(), overlap.begin(), overlap.end());
    file.resize(file.size() + 12, 0);
    emit("safetensors", "overlapping-offsets", file);
    const std::string shape = R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})";
    Bytes wraps;
    put_le<uint64_t>(wraps, shape.size());
    wraps.insert(wraps.end(), shape.begin(), shape.end());
    emit("safetensors", "shape-product-wraps", wraps);
  }
  emit("cifar", "not-a-multiple-of-the-record", Bytes(100, 7));
  emit("stl10", "not-a-multiple-of-an-image", join({Bytes(5, 1), Bytes{1}}));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc == 3 ? argv[1] : "";
  if (mode != "seeds" && mode != "regressions") {
    std::cerr << "usage: make_seeds seeds|regressions OUT_DIR\n";
    return 2;
  }
  g_out = argv[2];
  try {
    if (mode == "seeds")
      seeds();
    else
      regressions();
  } catch (const std::exception& e) {
    std::cerr << "make_seeds: " << e.what() << "\n";
    return 1;
  }
  std::cout << "make_seeds: wrote the " << mode << " under " << g_out << "\n";
  return 0;
}
