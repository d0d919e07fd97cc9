// The reason a client is pinned, as sluiced's question words it: a lock taken without asking adds
// "advisory locks" where the question would have put it.
#include <gtest/gtest.h>

#include <utility>

#include "pool/backend_state.h"

namespace sluice::pool {
namespace {

TEST(BackendStateTest, ALockTakenJoinsTheListInTheQuestionsOrder) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "advisory locks"},
      {"temporary objects", "temporary objects, advisory locks"},
      {"temporary objects, LISTEN", "temporary objects, advisory locks, LISTEN"},
      {"WITH HOLD cursors, LISTEN", "advisory locks, WITH HOLD cursors, LISTEN"},
      {"advisory locks, LISTEN", "advisory locks, LISTEN"},
  };
  for (const auto& [held, expected] : cases) EXPECT_EQ(with_advisory_locks(held), expected) << held;
}

}  // namespace
}  // namespace sluice::pool
