// The training step as one CUDA graph (TrainConfig::cuda_graph, engine/cuda_graph.h; issue 18), and the
// per-step numbers it reads from device memory (ops::StepScalar).
//
// Untagged (run everywhere): a learning rate and tau held in a tensor apply exactly the float the number
// does (LARS, EMA); bad tensors are named; cuda_graph on a CPU learner is a clear error.
//
// [cuda] (skipped without a GPU):
//  - StepScalar on the GPU: the tensor form equals the number form bitwise (LARS, EMA); a captured LARS
//    step and EMA replayed with new values each time equal eager calls bitwise.
//  - Learner steps with the graph against eager steps, from the same initialisation and batches: losses,
//    online and target weights, LARS momentum, BN statistics and projections. Yardstick: two eager learners
//    against each other (cuDNN may choose non-deterministic algorithms); the graph must stay within 10x of
//    that (and within 1e-5 where the eager runs agree exactly). The weights' updates are compared too, with
//    the replays inside the learning rate's warm-up, so a rate kept from the capture shows. With the probe,
//    gradient accumulation, and a change of batch shape (a second capture), and with the unified objective at
//    beta = 0.5 and one pass per view.
//  - A learner whose capture is refused (CudaGraph::fail_captures_for_testing) reports why and goes on with
//    eager steps that match an eager learner's.
//  - [nccl] The same over DataParallel with two ranks (tests/twin_ranks.h: one NCCL rank presented as two):
//    the graph holds the bucketed gradient all-reduces and the synced batch norm's, and its replays match
//    eager data-parallel steps; a refused capture goes eager after the ranks' agreement.
//  - CudaGraph's refusals: a body that reads a tensor back to the host, one that keeps memory it
//    allocated, and one that grows the process-wide workspace throw naming the cause; the device (and the
//    workspace) keep working afterwards.
#include <catch2/catch.hpp>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "byol/distributed.h"
#include "byol/learner.h"
#include "engine/comm/nccl_communicator.h"
#include "engine/cuda_graph.h"
#include "engine/ops.h"
#include "engine/optim_ops.h"
#include "engine/phase_clock.h"
#include "tests/tiny_byol.h"
#if BYOL_WITH_CUDA
#include "tests/cuda_test_helpers.h"
#include "tests/twin_ranks.h"
#endif

using namespace byol;

namespace {

bool bitwise_same(const Tensor& a, const Tensor& b) {
  return a.to(Device::cpu()).to_vector<float>() == b.to(Device::cpu()).to_vector<float>();
}

// A LARS step and an EMA on random buffers of `device`, the learning rate and tau given as numbers or as
// tensors; returns the updated weights, momentum and target, concatenated.
Tensor optimizer_pass(Device device, bool in_tensor) {
  std::mt19937_64 gen(11);
  const int64_t n = 1000;
  const Tensor w = Tensor::randn({n}, gen).to(device), g = Tensor::randn({n}, gen).to(device),
               m = Tensor::randn({n}, gen, DType::f32, 0.0, 0.1).to(device),
               target = Tensor::randn({n - 40}, gen).to(device);
  const ops::LarsLayout layout({{0, 300, false, false}, {300, 310, true, true}, {320, n, false, false}}, n);
  const Tensor trust = Tensor::zeros({3}, DType::f64, device);
  const double lr = 0.3712345678901, tau = 0.99612345678901;  // not exact in f32: the rounding is tested
  ops::LarsHyper h{lr, 1.5e-6, 0.9, 1e-3};
  ops::StepScalar tau_arg = tau;
  if (in_tensor) {
    h.lr = ops::StepScalar(Tensor::full({}, lr, DType::f32, device));
    tau_arg = ops::StepScalar(Tensor::full({1}, tau, DType::f32, device));
  }
  ops::lars_step_(w, g, m, layout, h, trust);
  ops::ema_(target, w, tau_arg);
  return ops::concat({w, m, target});
}

}  // namespace

TEST_CASE("step scalars: a learning rate and tau in a tensor apply the number's float, bad ones are named",
          "[byol][optim]") {
  CHECK(bitwise_same(optimizer_pass(Device::cpu(), true), optimizer_pass(Device::cpu(), false)));

  const Tensor w = Tensor::zeros({8}), target = Tensor::zeros({8});
  CHECK_THROWS_WITH(ops::ema_(target, w, ops::StepScalar(Tensor::zeros({2}))),
                    Catch::Matchers::Contains("ema_: argument 'tau' expected an f32 tensor of one element"));
  CHECK_THROWS_WITH(ops::ema_(target, w, ops::StepScalar(Tensor::zeros({}, DType::f64))),
                    Catch::Matchers::Contains("expected an f32 tensor of one element, got f64"));
  const ops::LarsLayout layout({{0, 8, false, false}}, 8);
  ops::LarsHyper h{0.1, 0, 0.9, 1e-3};
  h.lr = ops::StepScalar(Tensor::zeros({1, 2}));
  CHECK_THROWS_WITH(
      ops::lars_step_(w, Tensor::zeros({8}), Tensor::zeros({8}), layout, h, Tensor::zeros({1}, DType::f64)),
      Catch::Matchers::Contains("lars_step_: argument 'lr' expected an f32 tensor of one element"));
}

TEST_CASE("train.cuda_graph on a CPU learner is a clear error", "[byol][graph]") {
  TrainConfig train;
  train.batch_size = 4;
  train.total_steps = 4;
  train.warmup_steps = 0;
  train.cuda_graph = true;
  Learner learner(test_util::tiny_network(), train);
  std::mt19937_64 gen(3);
  const Tensor v = Tensor::randn({4, 8, 8, 3}, gen);
  CHECK_THROWS_WITH(learner.step(v, v),
                    Catch::Matchers::Contains("train.cuda_graph needs the learner on a GPU"));
  CHECK(learner.graph_captures() == 0);
}

#if BYOL_WITH_CUDA
using cuda_test::kGpu;
using cuda_test::rel_error;

TEST_CASE("[cuda] step scalars on the GPU: the tensor form equals the number form bitwise", "[cuda][graph]") {
  CHECK(bitwise_same(optimizer_pass(kGpu, true), optimizer_pass(kGpu, false)));
  // And the GPU's LARS and EMA agree with the CPU's (the same per-element formulas; norms in double).
  const double e =
      rel_error(optimizer_pass(kGpu, true).to(Device::cpu()), optimizer_pass(Device::cpu(), false));
  std::printf("[cuda graph] LARS + EMA, tensor-held lr and tau, GPU vs CPU: %.2e\n", e);
  CHECK(e < 1e-6);
}

namespace {

NetworkConfig small_network() {
  NetworkConfig net;
  net.encoder.depth = 18;
  net.encoder.stem = models::Stem::cifar;
  net.encoder.base_channels = 8;
  net.projector_hidden = 64;
  net.projection_dim = 16;
  net.predictor_hidden = 64;
  return net;
}

struct Run {
  std::vector<double> losses, probe_losses;
  Tensor online, update, target, momentum, stats, projections;  // update: online minus its initial value
  int64_t captures = 0;
  std::string failure;  // Learner::graph_failure
};

// `steps` steps on fresh random batches (the same for every call), the shape changing to `later_batch`
// rows from step `change_at` on. `contrastive`: the unified objective at beta = 0.5 (InfoNCE terms, a
// constant added by Tensor::full each step) with one pass per view. `ranks`: data-parallel over that
// communicator (synced batch norm, small gradient buckets), the metrics averaged over the ranks.
Run train(bool graph, int64_t accumulation, bool with_probe, int steps, int change_at, int64_t later_batch,
          bool contrastive = false, comm::Communicator* ranks = nullptr) {
  TrainConfig train;
  train.batch_size = 8;
  train.total_steps = 20;
  // The replays fall inside the linear warm-up, where the learning rate grows 12-50 % per step: a graph that
  // kept the captured rate moves the weights' updates by that much (on the flat top of the cosine the rate
  // changes by under 1 % per step, and LARS moves each weight by about 3e-5 of its norm).
  train.warmup_steps = 12;
  train.seed = 7;
  train.accumulation_steps = accumulation;
  train.probe_classes = with_probe ? 5 : 0;
  train.cuda_graph = graph;
  if (contrastive) {
    train.objective.beta = 0.5;
    train.view_passes = TrainConfig::ViewPasses::two;
  }
  Learner learner(small_network(), train);
  learner.to(kGpu);
  std::unique_ptr<DataParallel> dp;
  if (ranks) {
    dp = std::make_unique<DataParallel>(learner, *ranks, DataParallelOptions{size_t(1) << 12, true});
    REQUIRE(dp->bucket_count() > 3);  // several all-reduces per step, launched during backward
    dp->broadcast_from_root();
  }
  const Tensor initial = learner.nets.online.params().to(Device::cpu()).clone();
  std::mt19937_64 gen(19);
  std::uniform_int_distribution<int> label(0, 4);
  Run r;
  for (int s = 0; s < steps; ++s) {
    const int64_t n = s >= change_at ? later_batch : 8;
    const Tensor v1 = Tensor::randn({n, 16, 16, 3}, gen).to(kGpu),
                 v2 = Tensor::randn({n, 16, 16, 3}, gen).to(kGpu);
    std::vector<int32_t> labels(static_cast<size_t>(n));
    for (int32_t& l : labels) l = label(gen);
    const Tensor y = with_probe ? Tensor::from_vector(labels, {n}).to(kGpu) : Tensor();
    const StepMetrics m = learner.step(v1, v2, y);
    const StepValues v = dp ? dp->mean_over_ranks(m) : m.read();
    r.losses.push_back(v.loss);
    r.probe_losses.push_back(v.probe_loss);
  }
  r.online = learner.nets.online.params().to(Device::cpu());
  r.update = ops::add(r.online, ops::scale(initial, -1.0));
  r.target = learner.nets.target.params().to(Device::cpu());
  r.momentum = learner.lars.momentum().to(Device::cpu());
  r.stats = learner.nets.online.stats().to(Device::cpu());
  r.projections = learner.last_projections().to(Device::cpu());
  r.captures = learner.graph_captures();
  r.failure = learner.graph_failure();
  return r;
}

double max_loss_gap(const std::vector<double>& a, const std::vector<double>& b) {
  double gap = 0;
  for (size_t i = 0; i < a.size(); ++i)
    gap = std::max(gap, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), 1e-12));
  return gap;
}

void compare(const char* what, const Run& graph, const Run& eager, const Run& eager_again) {
  struct Gap {
    const char* name;
    double graph, noise;  // graph vs eager, eager vs eager
  };
  const auto tensors = [&](const char* name, Tensor Run::*t) {
    return Gap{name, rel_error(graph.*t, eager.*t), rel_error(eager_again.*t, eager.*t)};
  };
  const auto losses = [&](const char* name, std::vector<double> Run::*l) {
    return Gap{name, max_loss_gap(graph.*l, eager.*l), max_loss_gap(eager_again.*l, eager.*l)};
  };
  const Gap gaps[] = {losses("losses", &Run::losses),        losses("probe", &Run::probe_losses),
                      tensors("online", &Run::online),       tensors("online update", &Run::update),
                      tensors("target", &Run::target),       tensors("momentum", &Run::momentum),
                      tensors("BN statistics", &Run::stats), tensors("projections", &Run::projections)};
  std::printf("[cuda graph] %s, graph vs eager (eager vs eager):", what);
  for (const Gap& g : gaps) std::printf(" %s %.2e (%.2e)", g.name, g.graph, g.noise);
  std::printf("; captures %lld\n", static_cast<long long>(graph.captures));
  // The floor, where two eager runs agree exactly: cuBLAS or cuDNN may pick other kernels under capture. The
  // updates are 1e-4 to 1e-3 of the weights, so the weights' rounding differences are that much larger
  // relative to them: their floor is 1e-3 (a learning rate kept from the capture moves them by 12-50 %).
  for (const Gap& g : gaps) {
    const double floor = std::string(g.name) == "online update" ? 1e-3 : 1e-5;
    INFO(g.name << (g.noise == 0 ? " (the eager runs agree exactly: the floor applies)" : "") << ", floor "
                << floor);
    CHECK(g.graph <= std::max(10 * g.noise, floor));
  }
}

}  // namespace

TEST_CASE("[cuda] train.cuda_graph: replayed steps take the eager steps' path, through a change of shape",
          "[cuda][graph]") {
  cuda_test::Tf32Guard tf32(false);
  SECTION("plain: two eager steps, a capture, replays") {
    const Run g = train(true, 1, false, 6, 99, 8), e = train(false, 1, false, 6, 99, 8),
              e2 = train(false, 1, false, 6, 99, 8);
    CHECK(g.captures == 1);
    CHECK(e.captures == 0);
    compare("plain, 6 steps", g, e, e2);
  }
  SECTION("probe on, two micro-batches, the batch shrinking at step 5 (a second capture at step 7)") {
    const Run g = train(true, 2, true, 9, 4, 4), e = train(false, 2, true, 9, 4, 4),
              e2 = train(false, 2, true, 9, 4, 4);
    CHECK(g.captures == 2);
    compare("probe + accumulation + new shape, 9 steps", g, e, e2);
  }
  SECTION("the unified objective at beta = 0.5, one pass per view") {
    const Run g = train(true, 1, false, 6, 99, 8, true), e = train(false, 1, false, 6, 99, 8, true),
              e2 = train(false, 1, false, 6, 99, 8, true);
    CHECK(g.captures == 1);
    compare("beta 0.5, two view passes, 6 steps", g, e, e2);
  }
}

TEST_CASE("[cuda] train.cuda_graph: a refused capture says why once and the run goes on eagerly",
          "[cuda][graph]") {
  cuda_test::Tf32Guard tf32(false);
  struct Refused {  // scoped: a failing REQUIRE must not leave later tests refusing their captures
    Refused() { CudaGraph::fail_captures_for_testing(true); }
    ~Refused() { CudaGraph::fail_captures_for_testing(false); }
  };
  Run g;
  {
    const Refused refused;
    g = train(true, 1, false, 6, 99, 8);
  }
  const Run e = train(false, 1, false, 6, 99, 8), e2 = train(false, 1, false, 6, 99, 8);
  CHECK(g.captures == 0);
  CHECK(g.failure.find("fail_captures_for_testing") != std::string::npos);
  compare("capture refused, 6 steps (eager after it)", g, e, e2);
}

TEST_CASE("[cuda] train.cuda_graph over two data-parallel ranks: the graph holds NCCL's all-reduces",
          "[cuda][graph][nccl]") {
  if (!comm::nccl_compiled()) {
    WARN("skipped: this build has no NCCL");
    return;
  }
  cuda_test::Tf32Guard tf32(false);
  std::unique_ptr<comm::Communicator> nccl = comm::make_nccl_communicator();
  cuda_test::TwinRanks twins(*nccl);
  SECTION("plain: two eager steps, a capture, replays") {
    const Run g = train(true, 1, false, 6, 99, 8, false, &twins),
              e = train(false, 1, false, 6, 99, 8, false, &twins),
              e2 = train(false, 1, false, 6, 99, 8, false, &twins);
    CHECK(g.captures == 1);
    CHECK(g.failure.empty());
    compare("two ranks, 6 steps", g, e, e2);
  }
  SECTION("probe on (its all-reduce eager, after the replay), two micro-batches, the InfoNCE candidates") {
    const Run g = train(true, 2, true, 6, 99, 8, true, &twins),
              e = train(false, 2, true, 6, 99, 8, true, &twins),
              e2 = train(false, 2, true, 6, 99, 8, true, &twins);
    CHECK(g.captures == 1);
    CHECK(g.failure.empty());
    compare("two ranks, probe + accumulation + beta 0.5, 6 steps", g, e, e2);
  }
  SECTION("a refused capture: the ranks agree, and every step after it runs eagerly") {
    Run g;
    {
      struct Refused {
        Refused() { CudaGraph::fail_captures_for_testing(true); }
        ~Refused() { CudaGraph::fail_captures_for_testing(false); }
      } refused;
      g = train(true, 1, false, 6, 99, 8, false, &twins);
    }
    const Run e = train(false, 1, false, 6, 99, 8, false, &twins),
              e2 = train(false, 1, false, 6, 99, 8, false, &twins);
    CHECK(g.captures == 0);
    CHECK(g.failure.find("fail_captures_for_testing") != std::string::npos);
    compare("two ranks, capture refused, 6 steps (eager after it)", g, e, e2);
  }
  SECTION("a capture that succeeded here and failed on the other rank: both go on eagerly") {
    twins.refuse_next_agreement =
        true;  // the first one-element f64 sum in train() is the capture's agreement
    const Run g = train(true, 1, false, 6, 99, 8, false, &twins);
    CHECK_FALSE(twins.refuse_next_agreement);  // the agreement took place
    twins.refuse_next_agreement = false;
    const Run e = train(false, 1, false, 6, 99, 8, false, &twins),
              e2 = train(false, 1, false, 6, 99, 8, false, &twins);
    CHECK(g.captures == 0);
    CHECK(g.failure.find("failed on another rank") != std::string::npos);
    compare("two ranks, capture failed on the other rank, 6 steps (eager after it)", g, e, e2);
  }
  SECTION("a capture that throws mid-backward, with a gradient bucket's all-reduce captured and pending") {
    twins.refuse_captured_async_at = 1;
    const Run g = train(true, 1, false, 6, 99, 8, false, &twins);
    twins.refuse_captured_async_at = -1;
    const Run e = train(false, 1, false, 6, 99, 8, false, &twins),
              e2 = train(false, 1, false, 6, 99, 8, false, &twins);
    CHECK(g.captures == 0);
    CHECK(g.failure.find("refused inside the capture") != std::string::npos);
    // Nothing waits for the abandoned collectives (DataParallel::abandon), so the eager steps after it run
    // clean.
    compare("two ranks, capture failed mid-backward, 6 steps (eager after it)", g, e, e2);
  }
}

TEST_CASE(
    "[cuda] a captured LARS step and EMA replay with the learning rate and tau written before each replay",
    "[cuda][graph]") {
  // Deterministic kernels only (no cuDNN): the graph's replays must equal eager calls bitwise, step by step,
  // while lr and tau change between replays; a kernel that kept the value it was captured with fails.
  std::mt19937_64 gen(5);
  const int64_t n = 4096;
  const ops::LarsLayout layout({{0, 1000, false, false}, {1000, 1010, true, true}, {1024, n, false, false}},
                               n);
  struct State {
    Tensor w, g, m, target, trust;
  };
  const Tensor w0 = Tensor::randn({n}, gen), m0 = Tensor::randn({n}, gen, DType::f32, 0.0, 0.1),
               t0 = Tensor::randn({n}, gen);
  std::vector<Tensor> grads;
  for (int s = 0; s < 4; ++s) grads.push_back(Tensor::randn({n}, gen, DType::f32, 0.0, 1e-2).to(kGpu));
  const auto fresh = [&] {
    return State{w0.to(kGpu), Tensor::zeros({n}, DType::f32, kGpu), m0.to(kGpu), t0.to(kGpu),
                 Tensor::zeros({3}, DType::f64, kGpu)};
  };
  const double lrs[4] = {0.1, 0.37, 0.9, 0.05}, taus[4] = {0.99, 0.5, 0.999, 0.9};
  State eager = fresh(), graphed = fresh();
  const Tensor lr = Tensor::zeros({}, DType::f32, kGpu), tau = Tensor::zeros({}, DType::f32, kGpu);
  layout.device_table(kGpu);  // uploaded on first use (a wait): before the capture, as a warm-up step does
  {  // one eager call of each kernel first, as a warm-up step does: a driver before CUDA 12.3 cannot load a
     // lazily loaded kernel during a capture
    State warm = fresh();
    ops::lars_step_(warm.w, warm.g, warm.m, layout, {ops::StepScalar(lr), 1.5e-6, 0.9, 1e-3}, warm.trust);
    ops::ema_(warm.target, warm.w, ops::StepScalar(tau));
  }
  CudaGraph graph;
  graph.capture(kGpu, [&] {
    ops::lars_step_(graphed.w, graphed.g, graphed.m, layout, {ops::StepScalar(lr), 1.5e-6, 0.9, 1e-3},
                    graphed.trust);
    ops::ema_(graphed.target, graphed.w, ops::StepScalar(tau));
  });
  for (int s = 0; s < 4; ++s) {
    eager.g.copy_(grads[s]);
    ops::lars_step_(eager.w, eager.g, eager.m, layout, {lrs[s], 1.5e-6, 0.9, 1e-3}, eager.trust);
    ops::ema_(eager.target, eager.w, taus[s]);
    graphed.g.copy_(grads[s]);
    lr.fill_(lrs[s]);
    tau.fill_(taus[s]);
    graph.replay();
    INFO("step " << s);
    CHECK(bitwise_same(graphed.w, eager.w));
    CHECK(bitwise_same(graphed.m, eager.m));
    CHECK(bitwise_same(graphed.target, eager.target));
  }
}

TEST_CASE("[cuda] PhaseClock on a GPU: event-timed phases, reused after reset; a graph step marks one phase",
          "[cuda][graph]") {
  PhaseClock clock(kGpu);
  const Tensor x = Tensor::full({1 << 22}, 1.0, DType::f32, kGpu);
  for (int window = 0; window < 2; ++window) {  // the second window reuses the first one's events
    clock.start();
    for (int i = 0; i < 20; ++i) (void)ops::scale(x, 1.5);
    clock.mark("a");
    (void)ops::add(x, x);
    clock.mark("b");
    const auto t = clock.totals();
    REQUIRE(t.size() == 2);
    CHECK(t[0].first == "a");
    CHECK(t[1].first == "b");
    CHECK(t[0].second > 0);
    CHECK(t[1].second > 0);
    clock.reset();
  }

  TrainConfig train;
  train.batch_size = 8;
  train.total_steps = 10;
  train.warmup_steps = 1;
  train.cuda_graph = true;
  Learner learner(small_network(), train);
  learner.to(kGpu);
  std::mt19937_64 gen(4);
  const Tensor v = Tensor::randn({8, 16, 16, 3}, gen).to(kGpu);
  learner.phase_clock = &clock;
  for (int i = 0; i < 5; ++i) {  // 2 eager steps, the capture, 2 replays
    clock.start();
    learner.step(v, v);
  }
  learner.phase_clock = nullptr;
  const auto t = clock.totals();
  std::vector<std::string> names;
  for (const auto& [name, secs] : t) {
    names.push_back(name);
    CHECK(secs > 0);
  }
  CHECK(names == std::vector<std::string>{"forward", "backward", "optimizer", "step (graph)"});
}

TEST_CASE("[cuda] CudaGraph refuses a body that reads back or keeps its memory, and the device goes on",
          "[cuda][graph]") {
  const Tensor x = Tensor::full({256}, 2.0, DType::f32, kGpu);
  (void)ops::scale(x, 3.0);  // loads the kernel eagerly (drivers before CUDA 12.3 cannot during a capture)
  CudaGraph graph;
  CHECK_THROWS_WITH(graph.capture(kGpu, [&] { (void)ops::scale(x, 3.0).to_vector<float>(); }),
                    Catch::Matchers::Contains("CUDA graph"));
  CHECK_FALSE(graph.captured());
  Tensor kept;
  CHECK_THROWS_WITH(graph.capture(kGpu, [&] { kept = ops::scale(x, 3.0); }),
                    Catch::Matchers::Contains("made during the capture are still held after it"));
  CHECK_FALSE(graph.captured());
  kept = Tensor();  // an allocation of a graph that never ran: dropped without a free

  // Process-wide scratch may not grow inside a capture (made there, it would die with a refused graph and
  // leave the cache pointing at nothing): a clear error, and the workspace works afterwards.
  CHECK_THROWS_WITH(graph.capture(kGpu, [&] { (void)cuda::workspace((size_t(1) << 30) + 1); }),
                    Catch::Matchers::Contains("cuda::workspace") &&
                        Catch::Matchers::Contains("inside a CUDA graph capture"));
  CHECK_FALSE(graph.captured());
  void* ws = cuda::workspace(size_t(1) << 20);
  CHECK(cudaMemsetAsync(ws, 0, size_t(1) << 20, cuda::compute_stream()) == cudaSuccess);
  CHECK(cudaStreamSynchronize(cuda::compute_stream()) == cudaSuccess);

  // A good body: written into a buffer allocated before, replayed with new inputs.
  const Tensor out = Tensor::zeros({256}, DType::f32, kGpu);
  graph.capture(kGpu, [&] { out.copy_(ops::scale(x, 3.0)); });
  REQUIRE(graph.captured());
  CHECK(out.to_vector<float>()[0] == 0.0f);  // capturing runs nothing
  graph.replay();
  CHECK(out.to_vector<float>()[255] == 6.0f);
  x.fill_(-1.0);
  graph.replay();
  CHECK(out.to_vector<float>()[17] == -3.0f);
  const Tensor y = ops::add(x, x);  // eager work after the graph
  CHECK(y.to_vector<float>()[3] == -2.0f);

  // Memory allocated before a capture and dropped inside it: the graph reads it on every replay, so it
  // stays allocated until the graph goes. Were it released at the capture's end, the tensor filled with -7
  // below would likely get its block, and the replay would read -7.
  Tensor before = Tensor::full({256}, 5.0, DType::f32, kGpu);
  graph.capture(kGpu, [&] {
    out.copy_(ops::scale(before, 2.0));
    before = Tensor();
  });
  const Tensor other = Tensor::full({256}, -7.0, DType::f32, kGpu);
  for (int i = 0; i < 2; ++i) {
    out.zero_();
    graph.replay();
    CHECK(out.to_vector<float>()[100] == 10.0f);
  }
  graph.reset();  // now the memory goes back, and the pool carries on
  CHECK(ops::scale(other, 2.0).to_vector<float>()[7] == -14.0f);
}

#endif  // BYOL_WITH_CUDA
