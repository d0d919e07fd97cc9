// How a scope ended; see DESIGN.md §1 for what each outcome does.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace sluice::pool {

enum class ScopeOutcome : std::size_t {
  clean,     // server at ReadyForQuery 'I': straight back to idle (after the reset query in session mode)
  rollback,  // server inside a transaction: ROLLBACK, then idle
  cancel,    // a query was running: CancelRequest, drain its results, roll back, then idle
  discard,   // anything failed or was unexpected: the server connection is closed
};

inline constexpr std::size_t kScopeOutcomeCount = 4;
inline constexpr std::array<ScopeOutcome, kScopeOutcomeCount> kAllScopeOutcomes = {
    ScopeOutcome::clean, ScopeOutcome::rollback, ScopeOutcome::cancel, ScopeOutcome::discard};

inline std::string_view outcome_name(ScopeOutcome outcome) {
  switch (outcome) {
    case ScopeOutcome::clean:
      return "clean";
    case ScopeOutcome::rollback:
      return "rollback";
    case ScopeOutcome::cancel:
      return "cancel";
    case ScopeOutcome::discard:
      return "discard";
  }
  return "discard";
}

}  // namespace sluice::pool
