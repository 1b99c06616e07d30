"""A fork server for the console scripts the tests run: each script in a process of its own,
without paying the imports again.

Every ``medvision-*`` process imports torch, Lightning and MONAI first, about 10 s on a slow
2-core machine, and the tests start over a hundred of them. This server imports those libraries
once (``PRELOAD``), then forks one child per request. The child is a fresh process from the
script's point of view: its own working folder, environment, ``sys.argv`` (the console script's
path first, as the script's own process would have it), standard output and error (a file), its
own process group, and the exit code the console script's wrapper would give (``sys.exit(main())``,
then the interpreter's exit: threads, ``atexit`` functions). What it does not see again is the
import of the preloaded libraries; the tests about what a start prints (``tests/test_cli.py``)
run new interpreters (``run_cli(..., fresh=True)``), and one test checks that a forked and a
fresh run print the same.

Protocol (one Unix-socket connection per run): the client sends one JSON line ``{"script",
"args", "cwd", "env", "out"}``; the child answers ``{"pid": ...}`` and, at its end,
``{"code": ...}``. The server runs until its socket file is removed or it is terminated.

    python tests/cli_server.py SOCKET_PATH
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import importlib.metadata
import io
import json
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any

#: what every console script imports before its work starts. Not W&B: its import makes a temporary
#: folder for media that the first child's exit would delete for every later child
PRELOAD = ("torch", "lightning.pytorch", "monai", "hydra", "omegaconf", "torchmetrics", "mlflow")


def _reap(*_: Any) -> None:
    """Collect finished children (the server never waits on one)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _exit_code(code: Any) -> int:
    """What ``sys.exit(code)`` makes the process return (a message is printed, as Python does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _run(conn: socket.socket, request: dict[str, Any]) -> None:
    """In the forked child: become the console script's process, run it, report, exit."""
    os.setsid()  # its own process group: a timeout ends the script and everything it started
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    conn.sendall((json.dumps({"pid": os.getpid()}) + "\n").encode())
    out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    # the server's own streams, still held by what the preloaded libraries set up (Lightning's log
    # handler): they write to descriptors 1 and 2 as well, so into the run's output from here on
    inherited = (sys.stdout, sys.stderr)
    for stream in inherited:
        stream.flush()
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace", write_through=True
    )
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    if "OMP_NUM_THREADS" in os.environ:  # the OpenMP runtime read it when the server started
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    sys.argv = [request["exe"], *request["args"]]
    code = 0
    try:
        (entry,) = importlib.metadata.entry_points(group="console_scripts", name=request["script"])
        sys.exit(entry.load()())
    except SystemExit as done:
        code = _exit_code(done.code)
    except BaseException:  # noqa: BLE001 (what the interpreter does with any uncaught exception)
        traceback.print_exc()
        code = 1
    # the interpreter's own exit, in its order: threading's exit hooks and the join of non-daemon
    # threads (loky's executor stops its workers there), then the atexit functions
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (*inherited, sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(OSError):
        conn.sendall((json.dumps({"code": code}) + "\n").encode())
    os._exit(code)


def serve(path: str) -> None:
    """Preload, then fork one child per connection until the socket file goes away."""
    for name in PRELOAD:
        importlib.import_module(name)
    if threading.active_count() != 1:  # forking a process with threads can leave a lock held
        raise RuntimeError(f"preloading started threads: {threading.enumerate()}")
    signal.signal(signal.SIGCHLD, _reap)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    server.settimeout(5.0)
    print("ready", flush=True)
    quiet = os.open(os.devnull, os.O_WRONLY)  # nobody reads the server's own output after this line
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    while os.path.exists(path):
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        with conn, conn.makefile("r") as lines:
            request = json.loads(lines.readline())
            if os.fork() == 0:
                server.close()
                _run(conn, request)


if __name__ == "__main__":
    serve(sys.argv[1])
