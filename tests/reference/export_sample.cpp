// Writes an exported encoder plus an input batch and the features byol.cpp computes for it, for
// tests/reference/check_export_torchvision.py (ctest: torchvision_export).
//
//   export_sample DEPTH OUT_DIR [STEM BASE WIDTH NAME]
//     ->  OUT_DIR/NAME.safetensors (torchvision names, OIHW; the encoder_config in the metadata)
//         OUT_DIR/NAME_io.safetensors ("input" NCHW, "features")
//   STEM imagenet or cifar, BASE the first stage's channels, WIDTH the multiplier; the defaults (imagenet,
//   64, 1, resnetDEPTH) are torchvision's own ResNets.
#include <cstdio>
#include <cstdlib>

#include "byol/checkpoint.h"
#include "engine/io/safetensors.h"

int main(int argc, char** argv) {
  using namespace byol;
  try {
    BYOL_CHECK(argc == 3 || argc == 7, "usage: export_sample DEPTH OUT_DIR [STEM BASE WIDTH NAME]");
    const int depth = std::atoi(argv[1]);
    const std::string dir = argv[2];
    models::ParamRegistry reg;
    models::ResNetConfig cfg;
    cfg.depth = depth;
    std::string name = "resnet" + std::to_string(depth);
    if (argc == 7) {
      BYOL_CHECK(std::string(argv[3]) == "cifar" || std::string(argv[3]) == "imagenet",
                 "STEM: cifar or imagenet");
      cfg.stem = std::string(argv[3]) == "cifar" ? models::Stem::cifar : models::Stem::imagenet;
      cfg.base_channels = std::atoi(argv[4]);
      cfg.width = std::atoi(argv[5]);
      name = argv[6];
    }
    models::ResNet net(reg, "encoder.", cfg);
    reg.finalize(false);
    std::mt19937_64 gen(depth);
    reg.initialize(gen);
    NoGradGuard no_grad;
    // A few training-mode passes give the BN running statistics values other than 0 and 1.
    for (int i = 0; i < 3; ++i) net.forward(Tensor::randn({4, 32, 32, 3}, gen, DType::f32, 0.5, 1.0), {});
    // Non-trivial scales and shifts too (the defaults 1 and 0 would hide a swapped weight/bias).
    for (const auto& e : reg.param_entries())
      if (e.shape.size() == 1) e.slot->copy_(Tensor::uniform(e.shape, gen, 0.5, 1.5));
    Tensor x = Tensor::randn({2, 32, 32, 3}, gen);
    Tensor features = net.forward(x, models::ForwardContext{false, {}});
    const std::string stem = dir + "/" + name;
    export_encoder(stem + ".safetensors", reg, "encoder.", &cfg);
    // NHWC -> NCHW for PyTorch: the same permutation as a KRSC -> OIHW filter.
    save_safetensors(stem + "_io.safetensors", {{"input", krsc_to_oihw(x)}, {"features", features}});
    std::printf("wrote %s.safetensors and %s_io.safetensors\n", stem.c_str(), stem.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
