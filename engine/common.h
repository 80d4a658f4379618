// Errors, checks and the host/device qualifier shared by the CPU backend and the CUDA kernels.
//
// Conventions:
//  - Every failure is a byol::Error (a std::runtime_error) whose message names the thing that was wrong
//    (op, argument, tensor, file) and what was expected. Nothing in the library calls exit().
//  - BYOL_CHECK(cond, parts...) throws with the parts concatenated plus the source location; use it for
//    preconditions at API boundaries. Messages read "<op>: <argument> expected <what>, got <what>".
//  - BYOL_HD marks the per-element math that one formula serves to both backends
//    (__host__ __device__ under nvcc, nothing under the host compiler).
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#if defined(__CUDACC__)
#define BYOL_HD __host__ __device__ __forceinline__
#else
#define BYOL_HD inline
#endif

namespace byol {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates anything that has an operator<< into one string.
template <class... Parts>
std::string cat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}

[[noreturn]] void throw_error(const std::string& message, const char* file, int line);

}  // namespace byol

#define BYOL_CHECK(cond, ...)                                                       \
  do {                                                                              \
    if (!(cond)) ::byol::throw_error(::byol::cat(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

#define BYOL_FAIL(...) ::byol::throw_error(::byol::cat(__VA_ARGS__), __FILE__, __LINE__)
