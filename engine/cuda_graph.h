// A CUDA graph of the work a function queues on a GPU's compute stream: captured once, replayed with one
// launch. The training step uses it (byol/learner.h, TrainConfig::cuda_graph): hundreds of kernel launches,
// each a few microseconds of host time, become one, and the host is free while the GPU works.
//
//   CudaGraph graph;
//   graph.capture(device, [&] { ...ops on tensors whose addresses stay fixed... });  // runs nothing
//   for (...) { ...write the inputs in place...; graph.replay(); }
//
// What the captured function may do: queue kernels, library calls (cuDNN, cuBLAS), device-to-device copies
// and memsets on the compute stream, and allocate and free device memory (stream-ordered: the graph then
// holds its own allocations, at fixed addresses). What it may not: wait for the GPU, copy to or from the
// host, or keep device memory it allocated beyond its return (the graph owns it; a tensor that outlives
// the capture must be allocated before it, and written by a copy inside). Memory allocated before the
// capture and freed inside it stays allocated until the graph is destroyed (its nodes may use it on every
// replay). Any of these mistakes makes capture() throw, naming it; nothing is launched then.
//
// A replay reads and writes the same addresses with the same kernel arguments every time: inputs are
// written in place before replay() (ops::StepScalar for the per-step numbers), outputs read after it.
// A CPU-only build has the class, and capture() says the build has no CUDA backend.
#pragma once

#include <functional>
#include <memory>

#include "engine/dtype.h"

namespace byol {

class CudaGraph {
 public:
  CudaGraph();
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Replaces any earlier graph. `device` must be a GPU whose memory comes from stream-ordered pools. Before
  // capturing it waits for the device once and hands the memory the eager steps left in the pool back to
  // the driver: the graph's allocations come from a pool of their own, and would otherwise need as much
  // again.
  void capture(Device device, const std::function<void()>& body);
  // Launches the graph on the compute stream of the device it was captured on; does not wait.
  void replay() const;
  bool captured() const;
  // Destroys the graph (waiting for its launches to finish) and its memory.
  void reset();
  // For tests: while on, capture() abandons every capture after running the body, and throws as a refused
  // capture does (the body's work is not run; nothing is launched).
  static void fail_captures_for_testing(bool on);
  // Before an NCCL communicator is aborted (a dead rank): destroys every live graph's executable without
  // waiting. NCCL's abort waits until no graph holds its collectives, and a learner's graph lives until the
  // error has unwound past it; CUDA frees an executable still running once it finishes (the abort makes
  // NCCL's kernels exit). Those graphs become empty; their memory is left to the ending process.
  static void release_all_for_abort();

  struct Impl;  // opaque (engine/cuda_graph.cpp)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace byol
