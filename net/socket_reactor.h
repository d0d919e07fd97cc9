// A loop's sockets, watched with sluiced's own epoll rather than libuv's poll handles, and the loop
// that runs them with libuv's. A connection costs an epoll_ctl on the way in and one on the way
// out; a libuv poll handle costs four more (uv_poll_init probes the socket with an ADD and a DEL
// and sets FIONBIO on what accept4 made non-blocking, uv_poll_start removes the socket before it
// adds it): four of the seventeen system calls of a `pgbench -C` transaction. libuv keeps the
// rest (timers, signals, async wake-ups, the poll handles off the hot path): its own epoll
// descriptor is one more entry here, and libuv gets a non-blocking turn only when it has work, so
// a turn that only moves bytes makes one epoll_wait, with no timeout: libuv's next timer wakes it
// through a timerfd in the epoll (net/wake_timer.h).
#pragma once

#include <sys/epoll.h>
#include <uv.h>

#include <array>
#include <cstdint>
#include <vector>

#include "net/send_batch.h"
#include "net/wake_timer.h"

namespace sluice::net {

class SocketReactor {
 public:
  class Watcher {
   public:
    // The events epoll reported (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP).
    virtual void on_events(std::uint32_t events) = 0;
    // The reactor goes while this is still watched: one nobody owns any more (a socket left to
    // flush its last bytes) releases itself now, as closing the loop closed libuv's handles.
    virtual void on_reactor_closing() {}

   protected:
    friend class SocketReactor;
    virtual ~Watcher() = default;

   private:
    // The reactor's list of watchers not yet released.
    Watcher* previous_ = nullptr;
    Watcher* next_ = nullptr;
    bool released_ = false;  // an event this turn read for it is not handed over
  };

  // Called around each kernel poll: before it (the last turn's work is done) and once the turn's
  // socket callbacks have run (libuv's prepare and check phases, for the sockets here).
  class TurnHook {
   public:
    virtual void before_poll() = 0;
    virtual void after_poll() = 0;

   protected:
    ~TurnHook() = default;
  };

  // One per loop, made after uv_loop_init: the loop finds it through its data pointer, which
  // nothing else uses. The daemon's loops are closed first (net/loop_close.h closes its handle
  // too); one still open when the reactor goes gets its handle closed then, in a last libuv turn.
  explicit SocketReactor(uv_loop_t* loop);
  ~SocketReactor();
  SocketReactor(const SocketReactor&) = delete;
  SocketReactor& operator=(const SocketReactor&) = delete;

  [[nodiscard]] static SocketReactor& of(uv_loop_t* loop);

  // Watches `fd` for `events` (EPOLLIN, EPOLLOUT; not 0). False with errno when epoll refuses it.
  bool add(int fd, std::uint32_t events, Watcher* watcher);
  // From watching `from` to `to`; 0 takes the descriptor out of the epoll, which would otherwise
  // report a hang-up over and over (as libuv stops a poll handle with no events). If epoll refuses,
  // the descriptor is out of it and the watcher gets EPOLLERR in the next turn.
  void change(int fd, std::uint32_t from, std::uint32_t to, Watcher* watcher);
  // The watcher is done: `fd` >= 0 is taken out of the epoll (before anyone closes it: a close
  // takes it out only with the last reference to its file); -1 when it is not watched now. The
  // watcher gets no more events and is freed before the next poll (an event this turn already
  // read for it is dropped).
  void release(Watcher* watcher, int fd = -1);

  // The sends batched sockets queue in a turn, made before the next poll.
  [[nodiscard]] SendBatch& send_batch() { return send_batch_; }

  void add_hook(TurnHook* hook) { hooks_.push_back(hook); }
  void remove_hook(TurnHook* hook);

  // Turns until stop(), or until neither a socket nor a libuv handle or request is left. Code on
  // such a loop stops it with stop(), never uv_stop.
  void run();
  // One turn; the poll waits at most `timeout_ms` (-1: until something happens).
  void turn(int timeout_ms);
  void stop();

 private:
  static constexpr int kMaxEvents = 256;

  void free_released();

  uv_loop_t* loop_;
  // In the epoll: wakes it for libuv's next timer. Made before epoll_fd_, which the constructor
  // closes itself if it throws.
  WakeTimer wake_timer_;
  int epoll_fd_;
  bool stopping_ = false;
  bool libuv_due_ = false;      // libuv's descriptor was ready: it gets a turn before the next poll
  Watcher* watched_ = nullptr;  // the first of the list
  // Active and referenced while a socket is watched, so that libuv counts the loop alive and
  // uv_backend_timeout gives its next timer (not 0, as for a loop with nothing to do) even when its
  // other handles are unreferenced.
  uv_prepare_t keep_alive_{};
  std::vector<TurnHook*> hooks_;
  std::vector<Watcher*> released_;
  std::vector<Watcher*> freeing_;      // the batch free_released deletes
  std::vector<Watcher*> unwatchable_;  // epoll refused a change: EPOLLERR in the next turn
  std::array<epoll_event, kMaxEvents> events_{};
  SendBatch send_batch_;
};

}  // namespace sluice::net
