// Runs several BYOL steps of byol.cpp's Learner from a given starting point, for
// tests/reference/byol_trajectory.py, which runs the same steps in PyTorch and compares the two
// trajectories step by step. A one-step fixture (tests/test_reference_step.cpp) cannot see what carries
// over between steps: LARS momentum, the EMA target, BN running statistics, cached kernel state, the
// schedules. This can.
//
//   byol_trajectory IN.safetensors OUT.safetensors
//
// IN (written by the Python side): metadata base_channels, projector_hidden, projection_dim,
// predictor_hidden, batch, total_steps, warmup_steps, base_lr, weight_decay, eta, momentum, tau_base;
// tensors init.online.<name> and init.target.<name> (byol.cpp layouts: KRSC filters) and view1, view2,
// each f32 [steps, batch, side, side, 3] (NHWC, normalised).
// OUT: "loss" f32 [steps] and final.online.<name>, final.target.<name>, final.online_stats.<name>.
#include <cstdio>
#include <string>

#include "byol/learner.h"
#include "engine/io/safetensors.h"

int main(int argc, char** argv) {
  using namespace byol;
  try {
    BYOL_CHECK(argc == 3, "usage: byol_trajectory IN.safetensors OUT.safetensors");
    const SafetensorsFile in = load_safetensors(argv[1]);
    auto meta = [&](const char* key) { return std::stod(in.metadata_value(key)); };
    NetworkConfig net;
    net.encoder.depth = 18;
    net.encoder.stem = models::Stem::cifar;
    net.encoder.base_channels = static_cast<int64_t>(meta("base_channels"));
    net.projector_hidden = static_cast<int64_t>(meta("projector_hidden"));
    net.projection_dim = static_cast<int64_t>(meta("projection_dim"));
    net.predictor_hidden = static_cast<int64_t>(meta("predictor_hidden"));
    TrainConfig train;
    train.batch_size = static_cast<int64_t>(meta("batch"));
    train.total_steps = static_cast<int64_t>(meta("total_steps"));
    train.warmup_steps = static_cast<int64_t>(meta("warmup_steps"));
    train.base_lr = meta("base_lr");
    train.weight_decay = meta("weight_decay");
    train.lars_eta = meta("eta");
    train.lars_momentum = meta("momentum");
    train.tau_base = meta("tau_base");
    Learner learner(net, train);
    for (const auto& e : learner.nets.online.param_entries()) in.copy_to("init.online." + e.name, *e.slot);
    for (const auto& e : learner.nets.target.param_entries()) in.copy_to("init.target." + e.name, *e.slot);

    const Tensor& v1 = in.get("view1");
    const Tensor& v2 = in.get("view2");
    BYOL_CHECK(v1.dim() == 5 && v1.shape() == v2.shape() && v1.size(1) == train.batch_size,
               "view1/view2: expected f32 [steps, batch, side, side, 3], got ", v1.describe(), " and ",
               v2.describe());
    const int64_t steps = v1.size(0);
    Tensor loss = Tensor::empty({steps}, DType::f32);
    for (int64_t s = 0; s < steps; ++s) {
      const Shape view_shape(v1.shape().begin() + 1, v1.shape().end());
      const int64_t per_step = v1.numel() / steps;
      const StepMetrics m = learner.step(v1.window(s * per_step, view_shape).contiguous(),
                                         v2.window(s * per_step, view_shape).contiguous());
      loss.data<float>()[s] = static_cast<float>(m.read().loss);
    }
    NamedTensors out{{"loss", loss}};
    for (const auto& e : learner.nets.online.param_entries()) out.emplace_back("final.online." + e.name, *e.slot);
    for (const auto& e : learner.nets.target.param_entries()) out.emplace_back("final.target." + e.name, *e.slot);
    for (const auto& e : learner.nets.online.stat_entries())
      out.emplace_back("final.online_stats." + e.name, *e.slot);
    save_safetensors(argv[2], out);
    std::printf("byol_trajectory: %lld steps, loss %.6f -> %.6f\n", static_cast<long long>(steps),
                loss.data<float>()[0], loss.data<float>()[steps - 1]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "byol_trajectory: error: %s\n", e.what());
    return 1;
  }
}
