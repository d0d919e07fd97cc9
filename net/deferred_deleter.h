// Frees objects on the next loop turn, never inside a callback that may still
// be running on them (Envoy's DeferredDeletable, in a few lines).
#pragma once

#include <uv.h>

#include <memory>
#include <vector>

namespace sluice::net {

class DeferredDeleter {
 public:
  explicit DeferredDeleter(uv_loop_t* loop);
  ~DeferredDeleter();
  DeferredDeleter(const DeferredDeleter&) = delete;
  DeferredDeleter& operator=(const DeferredDeleter&) = delete;

  template <class T>
  void defer(std::unique_ptr<T> object) {
    pending_.emplace_back(std::move(object));
    arm();
  }
  // Frees everything now (shutdown, after the loop has stopped).
  void flush() { pending_.clear(); }

 private:
  void arm();

  uv_check_t* check_;  // heap: freed in its close callback, which may outlive us
  std::vector<std::shared_ptr<void>> pending_;
};

}  // namespace sluice::net
