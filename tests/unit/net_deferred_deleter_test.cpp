// The deferred deleter: an object handed to it is freed when the loop next turns, never inside the
// callback that handed it over; one its destructor hands over waits a turn more; what is left when
// the deleter goes is freed then.
#include <gtest/gtest.h>
#include <uv.h>

#include <memory>
#include <optional>
#include <vector>

#include "net/deferred_deleter.h"
#include "net/socket_reactor.h"

namespace sluice::net {
namespace {

// Notes its own destruction in `freed`; may hand a successor to the deleter as it goes.
struct Tracked {
  Tracked(std::vector<int>& freed_ids, int own_id) : freed(freed_ids), id(own_id) {}
  ~Tracked() {
    freed.push_back(id);
    if (deleter != nullptr && successor != nullptr) deleter->defer(std::move(successor));
  }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;

  std::vector<int>& freed;
  int id;
  DeferredDeleter* deleter = nullptr;
  std::unique_ptr<Tracked> successor;
};

class DeferredDeleterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    reactor_.emplace(&loop_);
  }
  void TearDown() override {
    reactor_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  void turn() { reactor_->turn(0); }

  uv_loop_t loop_{};
  std::optional<SocketReactor> reactor_;
  std::vector<int> freed_;
};

TEST_F(DeferredDeleterTest, FreesOnTheNextTurnNotBefore) {
  {
    DeferredDeleter deleter(&loop_);
    deleter.defer(std::make_unique<Tracked>(freed_, 1));
    deleter.defer(std::make_unique<Tracked>(freed_, 2));
    EXPECT_TRUE(freed_.empty());
    turn();
    EXPECT_EQ(freed_, (std::vector<int>{1, 2}));
    // Reused after a turn that emptied it.
    deleter.defer(std::make_unique<Tracked>(freed_, 3));
    EXPECT_EQ(freed_.size(), 2U);
    turn();
    EXPECT_EQ(freed_, (std::vector<int>{1, 2, 3}));
  }
}

TEST_F(DeferredDeleterTest, WhatADestructorHandsOverWaitsForTheTurnAfter) {
  {
    DeferredDeleter deleter(&loop_);
    auto first = std::make_unique<Tracked>(freed_, 1);
    first->deleter = &deleter;
    first->successor = std::make_unique<Tracked>(freed_, 2);
    deleter.defer(std::move(first));
    turn();
    EXPECT_EQ(freed_, (std::vector<int>{1}));
    turn();
    EXPECT_EQ(freed_, (std::vector<int>{1, 2}));
  }
}

TEST_F(DeferredDeleterTest, WhatIsLeftIsFreedByFlushOrWithTheDeleter) {
  {
    DeferredDeleter deleter(&loop_);
    deleter.defer(std::make_unique<Tracked>(freed_, 1));
    deleter.flush();
    EXPECT_EQ(freed_, (std::vector<int>{1}));
    deleter.defer(std::make_unique<Tracked>(freed_, 2));
  }
  EXPECT_EQ(freed_, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace sluice::net
