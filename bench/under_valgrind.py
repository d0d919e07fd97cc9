"""A pooler started under a valgrind tool, for the phases that count what it does (bench/instructions.py
under callgrind, bench/page_footprint.py under lackey): started as another user if asked, awaited
until its socket is there, and stopped so that the tool writes out what it gathered."""
import os
import signal
import subprocess
import time

STOP_TIMEOUT_S = 120


def start(tool_options, command, run_as, log_path):
    """valgrind TOOL_OPTIONS COMMAND, its output in `log_path`. As another user (PgBouncer refuses
    root) by setuid in the child: valgrind is then the process signalled and its pid the traced
    pooler's, with no runuser in between to turn SIGINT into a SIGKILL 2 s later."""
    as_user = {"user": run_as, "group": run_as, "extra_groups": []} if run_as else {}
    with open(log_path, "w") as log:
        return subprocess.Popen(["valgrind", *tool_options, *command], stdout=log, stderr=subprocess.STDOUT,
                                **as_user)


def await_socket(process, socket, timeout_s, poll_s):
    """True once `socket` is there; False if the pooler exited first or `timeout_s` went by."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(socket):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def stop(process):
    """SIGINT (the pooler shuts down and the tool writes out what it holds), then SIGKILL."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as error:
        return str(error)
