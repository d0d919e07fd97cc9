#include "net/socket_reactor.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "net/turn_clock.h"

namespace sluice::net {

SocketReactor::SocketReactor(uv_loop_t* loop) : loop_(loop), epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
  epoll_event libuv{};
  libuv.events = EPOLLIN;
  libuv.data.ptr = nullptr;  // the one entry without a watcher
  epoll_event wake{};
  wake.events = EPOLLIN;
  wake.data.ptr = &wake_timer_;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, uv_backend_fd(loop_), &libuv) != 0 ||
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_timer_.fd(), &wake) != 0) {
    const int error = errno;
    ::close(epoll_fd_);
    throw std::runtime_error(std::string("epoll_ctl on libuv's descriptor or the wake timer: ") +
                             std::strerror(error));
  }
  loop_->data = this;
  uv_prepare_init(loop_, &keep_alive_);
  uv_prepare_start(&keep_alive_, [](uv_prepare_t*) {});
  uv_unref(reinterpret_cast<uv_handle_t*>(&keep_alive_));
}

SocketReactor::~SocketReactor() {
  for (Watcher* watcher = watched_; watcher != nullptr;) {
    Watcher* next = watcher->next_;  // it may release itself
    watcher->on_reactor_closing();
    watcher = next;
  }
  free_released();
  auto* keep_alive = reinterpret_cast<uv_handle_t*>(&keep_alive_);
  if (uv_is_closing(keep_alive) == 0) {
    uv_close(keep_alive, nullptr);
    uv_run(loop_, UV_RUN_NOWAIT);  // its close callback: after it, libuv is done with the handle
  }
  ::close(epoll_fd_);
  loop_->data = nullptr;
}

SocketReactor& SocketReactor::of(uv_loop_t* loop) { return *static_cast<SocketReactor*>(loop->data); }

bool SocketReactor::add(int fd, std::uint32_t events, Watcher* watcher) {
  epoll_event event{};
  event.events = events;
  event.data.ptr = watcher;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) return false;
  if (watched_ == nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&keep_alive_));
  watcher->next_ = watched_;
  if (watched_ != nullptr) watched_->previous_ = watcher;
  watched_ = watcher;
  return true;
}

void SocketReactor::change(int fd, std::uint32_t from, std::uint32_t to, Watcher* watcher) {
  if (from == to) return;
  epoll_event event{};
  event.events = to;
  event.data.ptr = watcher;
  const int operation = to == 0 ? EPOLL_CTL_DEL : (from == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD);
  if (epoll_ctl(epoll_fd_, operation, fd, &event) == 0 || to == 0) return;
  // Out of the epoll (ENOSPC at max_user_watches, ENOMEM), so that no event is lost unseen: the
  // watcher hears of it as of a socket error, in the next turn (libuv aborts here).
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  unwatchable_.push_back(watcher);
}

void SocketReactor::release(Watcher* watcher, int fd) {
  if (fd >= 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  unwatchable_.erase(std::remove(unwatchable_.begin(), unwatchable_.end(), watcher), unwatchable_.end());
  watcher->released_ = true;
  released_.push_back(watcher);
  (watcher->previous_ != nullptr ? watcher->previous_->next_ : watched_) = watcher->next_;
  if (watcher->next_ != nullptr) watcher->next_->previous_ = watcher->previous_;
  watcher->previous_ = watcher->next_ = nullptr;
  if (watched_ == nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&keep_alive_));
}

void SocketReactor::remove_hook(TurnHook* hook) {
  hooks_.erase(std::remove(hooks_.begin(), hooks_.end(), hook), hooks_.end());
}

void SocketReactor::free_released() {
  // A destructor may release more; those are freed in this loop too. Both lists keep their
  // capacity: a connection per transaction would otherwise allocate one each time.
  while (!released_.empty()) {
    freeing_.swap(released_);
    for (Watcher* watcher : freeing_) delete watcher;
    freeing_.clear();
  }
}

void SocketReactor::run() {
  send_batch_.make_ring();  // here, on the loop's thread, and before any count of descriptors
  stopping_ = false;
  while (!stopping_ && uv_loop_alive(loop_) != 0) turn(-1);
  stopping_ = false;
}

void SocketReactor::turn(int timeout_ms) {
  uv_update_time(loop_);  // a timer that came due during the last turn's callbacks is due now
  // libuv's turn first, when it has work: its timers then run before the hooks' before_poll, as
  // they did before libuv's own prepare phase, and their time counts in the turn it judges.
  // uv_backend_timeout is 0 while libuv has work for its next turn: a timer due, handles closing,
  // and (libuv 1.44) a handle's new interest (a poll handle started, a stream reading), which only
  // its next turn hands to its epoll: a libpq connect started in a socket callback, say.
  if (libuv_due_ || uv_backend_timeout(loop_) == 0) {
    libuv_due_ = false;
    uv_run(loop_, UV_RUN_NOWAIT);
    if (stopping_) return;  // one of its callbacks stopped the loop: no poll now
  }
  free_released();
  for (TurnHook* hook : hooks_) hook->before_poll();
  const int libuv_wait = unwatchable_.empty() ? uv_backend_timeout(loop_) : 0;
  int wait = timeout_ms < 0 ? libuv_wait : libuv_wait < 0 ? timeout_ms : std::min(timeout_ms, libuv_wait);
  // libuv's next timer (due at its loop time + wait) wakes the poll through the wake timer, not as
  // the poll's timeout (net/wake_timer.h).
  if (timeout_ms < 0 && wait > 0 && wake_timer_.wake_at(uv_now(loop_) + static_cast<std::uint64_t>(wait)))
    wait = -1;
  turn_clock::poll_next();
  int ready = epoll_wait(epoll_fd_, events_.data(), kMaxEvents, wait);
  if (ready < 0) ready = 0;  // EINTR: libuv's signal pipe says which
  uv_update_time(loop_);
  if (!unwatchable_.empty()) [[unlikely]] {
    std::vector<Watcher*> unwatchable;
    unwatchable.swap(unwatchable_);
    for (Watcher* watcher : unwatchable) {
      if (!watcher->released_) watcher->on_events(EPOLLERR);
    }
  }
  for (int i = 0; i < ready; ++i) {
    send_batch_.set_more_to_come(i + 1 < ready);
    const epoll_event& event = events_[static_cast<std::size_t>(i)];
    if (event.data.ptr == nullptr) {
      libuv_due_ = true;
    } else if (event.data.ptr == &wake_timer_) {
      wake_timer_.fired();
      libuv_due_ = true;
    } else {
      auto* watcher = static_cast<Watcher*>(event.data.ptr);
      if (!watcher->released_) watcher->on_events(event.events);
    }
  }
  send_batch_.set_more_to_come(false);
  send_batch_.flush();  // sends queue only while events are served: none is left for later
  turn_clock::poll_done();
  for (TurnHook* hook : hooks_) hook->after_poll();
}

// Not uv_stop: a libuv turn here runs once anyway, and a stop request it did not consume would end
// the next uv_run (net/loop_close.h's) before its close callbacks.
void SocketReactor::stop() { stopping_ = true; }

}  // namespace sluice::net
