// sluicectl's exit codes: scripts branch on these, so they never change meaning.
#pragma once

namespace sluice::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,             // anything else: no answer, a broken answer, an I/O error
  kExitUsage = 2,             // bad command line, or the daemon answered {"error": ...}
  kExitNotRunning = 3,        // no socket, or nobody listening on it
  kExitPermissionDenied = 4,  // EACCES on the socket, or the daemon refused our credentials
  kExitDrainForced = 5,       // drained, but scopes were cancelled at the deadline
};

}  // namespace sluice::cli
