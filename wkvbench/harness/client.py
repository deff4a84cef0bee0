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


def import_root() -> str:
    """The folder this process imported ``wkvbench`` from (a checkout or site-packages): the
    worker puts it first on its path so that it runs the same code as its parent."""
    import wkvbench

    return str(Path(wkvbench.__path__[0]).resolve().parent)


def signal_name(rc: int | None) -> str:
    if rc is None:
        return "did not exit"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name} (signal {-rc})"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with code {rc}"


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
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.case_id = None
        self.checked: set[str] = set()
        self._q: queue.Queue = queue.Queue()
        self._next_id = 0
        self._log_path: Path | None = None
        self._log_fh = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> dict:
        self.kill()
        self.starts += 1
        env = dict(os.environ)
        pkg_root = import_root()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONFAULTHANDLER", "1")
        env.update(self.env)
        cmd = [sys.executable, "-m", "wkvbench.harness.worker"]
        for p in self.plugins:
            cmd += ["--plugin", p]
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._log_path = self.log_dir / f"worker-{self.starts}.log"
            self._log_fh = open(self._log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in kill)
            err = self._log_fh
        else:
            self._log_path, err = None, subprocess.DEVNULL
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches the parent only; it ends the worker
        )
        self._q = queue.Queue()
        threading.Thread(target=self._reader, args=(self.proc.stdout, self._q), daemon=True).start()
        self.case_id, self.checked = None, set()
        reply = self._request({"cmd": "hello"}, self.startup_timeout)
        if not reply.get("ok"):
            raise WorkerDied(f"worker could not start: {reply.get('error')}")
        return reply

    @staticmethod
    def _reader(stream, q: queue.Queue) -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    def log_tail(self, lines: int = 6, limit: int = 600) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        if self._log_fh is not None:
            self._log_fh.flush()
        with open(self._log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            text = fh.read().decode("utf-8", "replace")
        keep = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("[worker]")]
        tail = " | ".join(keep[-lines:])
        return tail[-limit:]

    def request(self, cmd: str, timeout: float, **kw) -> dict:
        """Send one command; return the reply. Raises WorkerDied or WorkerTimeout."""
        if not self.alive:
            self.start()
        return self._request({"cmd": cmd, **kw}, timeout)

    def _request(self, msg: dict, timeout: float) -> dict:
        self._next_id += 1
        msg["id"] = self._next_id
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader will report the exit
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerTimeout(f"no answer to {msg['cmd']!r} within {timeout:.0f} s")
            try:
                line = self._q.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                try:
                    rc = self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    rc = None
                tail = self.log_tail()
                self.kill()
                raise WorkerDied(f"worker {signal_name(rc)}" + (f": {tail}" if tail else ""))
            reply = json.loads(line)
            if reply.get("id") not in (msg["id"], None):  # None: the worker failed before reading
                continue  # a stale answer (cannot happen with one request in flight; be safe)
            if reply.get("fatal"):
                self.kill()
            return reply

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except Exception:
                    pass
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        self.proc = None
        self.case_id, self.checked = None, set()

    def close(self) -> None:
        if self.alive:
            try:
                self._request({"cmd": "quit"}, 10)
            except (WorkerDied, WorkerTimeout):
                pass
        self.kill()
