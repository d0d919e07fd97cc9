// The deferred deleter: an object handed to it is freed when the loop next turns, never inside the
// callback that handed it over; one its destructor hands over waits a turn more; what is left when
// the deleter goes is freed then.
#include <gtest/gtest.h>
#include <uv.h>

#include <memory>
#include <vector>

#include "net/deferred_deleter.h"

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
    // The deleter's own handle does not keep the loop alive: this one makes each run turn once.
    ASSERT_EQ(uv_idle_init(&loop_, &keep_turning_), 0);
    ASSERT_EQ(uv_idle_start(&keep_turning_, [](uv_idle_t*) {}), 0);
  }
  void TearDown() override {
    uv_close(reinterpret_cast<uv_handle_t*>(&keep_turning_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  void turn() { uv_run(&loop_, UV_RUN_NOWAIT); }

  uv_loop_t loop_{};
  uv_idle_t keep_turning_{};
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
  turn();  // the deleter's handle closes
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
  turn();
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
  turn();
}

}  // namespace
}  // namespace sluice::net
