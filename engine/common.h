// Errors, checks and the host/device qualifier shared by the CPU backend and the CUDA kernels.
//
// Conventions:
//  - Every failure is a byol::Error (a std::runtime_error) whose message names the thing that was wrong
//    (op, argument, tensor, file) and what was expected. Nothing in the library calls exit().
//  - BYOL_CHECK(cond, parts...) throws with the parts concatenated plus the source location; use it for
//    preconditions at API boundaries. Messages read "<op>: <argument> expected <what>, got <what>".
//  - BYOL_HD (engine/math/hd.h) marks the per-element math that one formula serves to both backends
//    (__host__ __device__ under nvcc, nothing under the host compiler).
#pragma once

#include <cstdint>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>

#include "engine/math/hd.h"  // BYOL_HD

namespace byol {

// what() is the message and, for errors raised by BYOL_CHECK / BYOL_FAIL, the source location
// (" [file.cpp:123]"); message() is the message alone, what the apps show their users (--verbose adds the
// location back).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, std::string location = {})
      : std::runtime_error(location.empty() ? message : message + " [" + location + "]"),
        message_(message),
        location_(std::move(location)) {}
  const std::string& message() const { return message_; }
  const std::string& location() const { return location_; }

 private:
  std::string message_, location_;
};

// What a user sees for an exception: a byol::Error's message without its source location unless
// `verbose`, any other exception's what().
std::string error_text(const std::exception& e, bool verbose = false);

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

namespace byol {

// Runs f() for a reader of untrusted input and turns the standard exceptions that bad input can raise
// (std::bad_alloc or std::length_error from a size it declares, std::filesystem::filesystem_error and
// other std::system_error, std::out_of_range / std::invalid_argument from a number it holds) into a
// byol::Error that names `what` (a file, a dataset spec, a key). A byol::Error passes unchanged.
template <class F>
decltype(auto) with_context(const std::string& what, F&& f) {
  try {
    return std::forward<F>(f)();
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    BYOL_FAIL(what,
              ": out of memory while reading it (std::bad_alloc: a size it declares is larger than this "
              "machine can hold)");
  } catch (const std::length_error& e) {
    BYOL_FAIL(what, ": a size it declares is too large (std::length_error: ", e.what(), ")");
  } catch (const std::system_error& e) {
    BYOL_FAIL(what, ": ", e.what());
  } catch (const std::out_of_range& e) {
    BYOL_FAIL(what, ": a value in it is out of range (", e.what(), ")");
  } catch (const std::invalid_argument& e) {
    BYOL_FAIL(what, ": a value in it is not valid (", e.what(), ")");
  }
}

}  // namespace byol
