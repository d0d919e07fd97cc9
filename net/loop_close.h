// Closing a libuv loop that may still hold handles: close each and let the
// close callbacks run, so uv_loop_close succeeds (the daemon's and each
// worker's loop end this way).
#pragma once

#include <uv.h>

namespace sluice::net {

// On the loop's thread (or after it has ended): closes every handle not yet
// closing, runs the loop until their callbacks have run, then closes the loop.
void close_loop(uv_loop_t* loop);

}  // namespace sluice::net
