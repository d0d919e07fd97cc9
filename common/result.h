// A value or an error, for the data path where exceptions must not cross a
// libuv callback. Deliberately tiny: C++20 has no std::expected.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace sluice {

template <class E>
struct Failure {
  E error;
};

template <class E>
Failure(E) -> Failure<E>;

inline Failure<std::string> fail(std::string message) { return {std::move(message)}; }

template <class T, class E = std::string>
class Result {
 public:
  Result(T value)
      : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT(google-explicit-constructor)
  template <class F>
  Result(Failure<F> failure)  // NOLINT(google-explicit-constructor)
      : state_(std::in_place_index<1>, E(std::move(failure.error))) {}

  [[nodiscard]] bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  [[nodiscard]] T& value() { return std::get<0>(state_); }
  [[nodiscard]] const T& value() const { return std::get<0>(state_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }

  [[nodiscard]] const E& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, E> state_;
};

}  // namespace sluice
