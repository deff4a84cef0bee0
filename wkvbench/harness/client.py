"""The parent's handle on a worker process (:mod:`wkvbench.harness.worker`).

:class:`WorkerClient` starts ``python -m wkvbench.harness.worker``, sends it one JSON command per
line and waits for the answer with a time limit. A worker that exits before answering raises
:class:`WorkerDied` (with the signal and the tail of its stderr log); one that does not answer in
time is killed and raises :class:`WorkerTimeout`. The runner, the worker pool and ``verify``'s
per-implementation children use it; the protocol is described in :mod:`wkvbench.harness.worker`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class WorkerDied(RuntimeError):
    """The worker exited (crash, abort, fatal CUDA error) before answering."""


class WorkerTimeout(RuntimeError):
    """The worker did not answer within the step's time limit (it has been killed)."""


#: Set in a child's environment: the folder the parent imported ``wkvbench`` from.
ROOT_ENV = "WKVBENCH_PARENT_ROOT"


def import_root() -> str:
    """The folder this process imported ``wkvbench`` from (a checkout or site-packages): the
    worker puts it first on its path so that it runs the same code as its parent."""
    import wkvbench

    return str(Path(wkvbench.__path__[0]).resolve().parent)


def check_same_package() -> None:
    """In a child: exit with a message naming both folders unless this process imported
    ``wkvbench`` from where its parent did (a stale checkout in the working directory, say)."""
    want = os.environ.get(ROOT_ENV)
    have = import_root()
    if want and os.path.realpath(want) != os.path.realpath(have):
        print(f"wkvbench child process imported wkvbench from {have}, but its parent from {want}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)


def child_command(module: str, args=()) -> list[str]:
    """``python -m module args`` that never imports from the working directory: ``-P`` (3.11+)
    or, before it, a bootstrap that drops the path entry ``-c`` adds."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", module, *args]
    boot = f"import sys, runpy; sys.path.pop(0); runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return [sys.executable, "-c", boot, *args]


def child_env(extra: dict | None = None) -> dict:
    """The environment of a child: this one, the parent's ``wkvbench`` first on the path."""
    env = dict(os.environ)
    root = import_root()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env[ROOT_ENV] = root
    env.setdefault("PYTHONFAULTHANDLER", "1")
    env.setdefault("GIT_OPTIONAL_LOCKS", "0")  # the environment probe's `git status` never writes the index
    env.update(extra or {})
    return env


def signal_name(rc: int | None) -> str:
    if rc is None:
        return "did not exit"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name} (signal {-rc})"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with code {rc}"


class Child:
    """One crash-isolated child process: ``python -m MODULE ARGS`` in a process group of its own
    (Ctrl-C reaches the parent only), its stdout read line by line on a thread. :meth:`kill` ends
    the whole group; used as a context manager, every exit path kills it."""

    def __init__(self, module: str, args=(), env: dict | None = None, stderr=None, stdin: bool = True):
        self.proc = subprocess.Popen(
            child_command(module, args),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if stderr is None else stderr,
            env=child_env(env),
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._reader, args=(self.proc.stdout, self.lines), daemon=True).start()

    @staticmethod
    def _reader(stream, q: queue.Queue) -> None:
        try:
            for line in stream:
                q.put(line)
        except (OSError, ValueError):  # the stream was closed under us by kill()
            pass
        q.put(None)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError, AttributeError):
            pass  # the reader will report the exit

    def readline(self, timeout: float):
        """The next line, None at end of output, or raises queue.Empty after ``timeout`` s."""
        return self.lines.get(timeout=max(timeout, 0.0))

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Kill the child's whole process group (grandchildren included) and reap it."""
        with self._lock:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.wait(10)
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except Exception:
                    pass

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


class WorkerClient:
    """The parent's handle on one worker process at a time (restarted on demand)."""

    def __init__(
        self,
        plugins=(),
        log_dir: str | os.PathLike | None = None,
        startup_timeout: float = 300.0,
        env: dict | None = None,
    ):
        self.plugins = tuple(plugins)
        self.env = dict(env or {})  # set in the worker's environment (e.g. CUDA_VISIBLE_DEVICES)
        self.log_dir = Path(log_dir) if log_dir else None
        self.startup_timeout = startup_timeout
        self.child: Child | None = None
        self.starts = 0
        self.case_id = None
        self.checked: set[str] = set()
        self._next_id = 0
        self._log_path: Path | None = None
        self._log_fh = None

    @property
    def alive(self) -> bool:
        child = self.child
        return child is not None and child.alive

    def start(self) -> dict:
        self.kill()
        self.starts += 1
        args = []
        for p in self.plugins:
            args += ["--plugin", p]
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._log_path = self.log_dir / f"worker-{self.starts}.log"
            self._log_fh = open(self._log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in kill)
            err = self._log_fh
        else:
            self._log_path, err = None, None
        self.child = Child("wkvbench.harness.worker", args, env=self.env, stderr=err)
        self.case_id, self.checked = None, set()
        reply = self._request({"cmd": "hello"}, self.startup_timeout)
        if not reply.get("ok"):
            raise WorkerDied(f"worker could not start: {reply.get('error')}")
        return reply

    def log_tail(self, lines: int = 6, limit: int = 600) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        fh = self._log_fh
        if fh is not None:
            try:
                fh.flush()
            except ValueError:  # closed by kill() on another thread
                pass
        with open(self._log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", "replace")
        keep = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("[worker]")]
        tail = " | ".join(keep[-lines:])
        return tail[-limit:]

    def cancelled(self) -> bool:
        """True when the caller is stopping (a pool on Ctrl-C): a wait for an answer ends at once."""
        return False

    def request(self, cmd: str, timeout: float, **kw) -> dict:
        """Send one command; return the reply. Raises WorkerDied or WorkerTimeout."""
        if not self.alive:
            self.start()
        return self._request({"cmd": cmd, **kw}, timeout)

    def _request(self, msg: dict, timeout: float) -> dict:
        child = self.child  # kill() on another thread (Ctrl-C on a pool) may clear self.child
        if child is None:
            raise WorkerDied("the worker was stopped")
        self._next_id += 1
        msg["id"] = self._next_id
        child.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerTimeout(f"no answer to {msg['cmd']!r} within {timeout:.0f} s")
            if self.cancelled():
                self.kill()
                raise WorkerDied("the run was interrupted")
            try:
                line = child.readline(min(remaining, 0.25))
            except queue.Empty:
                continue
            if line is None:
                rc = child.wait(10)
                tail = self.log_tail()
                self.kill()
                raise WorkerDied(f"worker {signal_name(rc)}" + (f": {tail}" if tail else ""))
            try:
                reply = json.loads(line)
            except ValueError:
                continue  # not a protocol line
            if reply.get("id") not in (msg["id"], None):  # None: the worker failed before reading
                continue  # a stale answer (cannot happen with one request in flight; be safe)
            if reply.get("fatal"):
                self.kill()
            return reply

    def kill(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            child.kill()
        fh, self._log_fh = self._log_fh, None
        if fh is not None:
            fh.close()
        self.case_id, self.checked = None, set()

    def close(self) -> None:
        if self.alive:
            try:
                self._request({"cmd": "quit"}, 10)
            except (WorkerDied, WorkerTimeout):
                pass
        self.kill()
