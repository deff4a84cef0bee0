"""What the one-worker :class:`~.runner.Runner` and the :class:`~.pool.PoolRunner` share.

:class:`Sweep` owns the run directory's store, the skip predictor, ``--resume``, the progress bar
and the end of a run (``env.json``'s closing fields); a runner supplies :meth:`Sweep.start` (start
and probe its workers, compose ``env``), :meth:`Sweep.sweep` (measure the planned cells) and
:meth:`Sweep.end_fields` (what it adds to ``env.json`` when it stops, however it stops).
``planned`` is a list of ``(case, [(impl, reason), ...])``.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from wkvbench.harness import rundir
from wkvbench.harness.predict import SkipPredictor
from wkvbench.harness.store import RunStore


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunAborted(RuntimeError):
    """The sweep cannot go on at all (no worker can start)."""


class Sweep:
    """A planned sweep into one run directory (see the module docstring)."""

    def __init__(
        self,
        suite,
        device: str,
        out,
        plugins=(),
        resume: bool = False,
        progress: bool = True,
        argv=None,
        log=None,
        store: RunStore | None = None,
        predictor=None,
        retry: tuple[str, ...] = (),
    ):
        self.suite, self.device, self.out = suite, device, Path(out)
        self.run = suite.run
        self.plugins = tuple(plugins)
        self.resume = resume
        self.retry = tuple(retry)  # with --resume: statuses whose cells run again (--retry-failed)
        self.progress = progress
        self.argv = list(sys.argv if argv is None else argv)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.store = store if store is not None else RunStore(self.out, log=self.log)
        self.predictor = predictor if predictor is not None else SkipPredictor(self.run)
        self.env: dict | None = None
        self.written: list[tuple] = []
        self.bar = None

    # ------------------------------------------------------------------ the cells
    def done(self, key) -> bool:
        """Whether ``--resume`` keeps a cell: it has a row, not of a status to retry, and an ok
        row has its samples (a samples record lost to a torn line means measuring it again)."""
        row = self.store.get(key)
        if row is None or row["status"] in self.retry:
            return False
        return row["status"] != "ok" or self.store.has_samples(key)

    def pending(self, planned) -> int:
        """How many cells of ``planned`` this sweep will measure; logs when there are none.

        With ``--resume`` the cells already in the store are skipped and the predictor learns from their rows.
        """
        if self.resume:
            self.predictor.learn_rows(self.store.rows.values(), [c for c, _ in planned])
        total = sum(1 for c, impls in planned for name, _ in impls if not (self.resume and self.done(c.key(name))))
        if total == 0:
            self.log(f"nothing to do: every cell is already in {self.store.results}")
        return total

    def replace_earlier(self, planned) -> None:
        """A plain re-run (no ``--resume``) replaces the rows of the cells it measures; a resume
        replaces those of the cells it measures again (see :meth:`done`)."""
        if self.resume:
            keys = [c.key(n) for c, impls in planned for n, _ in impls]
            redo = [k for k in keys if self.store.has(k) and not self.done(k)]
            if redo:
                self.store.drop(redo)
                self.log(f"measuring {len(redo)} cell(s) again: failed (--retry-failed) or without their samples")
            return
        dropped = self.store.drop(c.key(name) for c, impls in planned for name, _ in impls)
        if dropped:
            self.log(f"replacing {dropped} earlier row(s) of these cells in {self.store.results}")

    # ------------------------------------------------------------------ the run
    def start(self) -> None:
        raise NotImplementedError

    def sweep(self, planned) -> None:
        raise NotImplementedError

    def end_fields(self) -> dict:
        return {}

    def execute(self, planned) -> int:
        """Run every planned cell; return the number of cells written."""
        total = self.pending(planned)
        if total == 0:
            return 0
        self.start()
        self.replace_earlier(planned)
        if self.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", dynamic_ncols=True, file=sys.stderr)
        try:
            self.sweep(planned)
        finally:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            self.finish()
        return len(self.written)

    def finish(self) -> None:
        """Close ``env.json``: when the run stopped and what the runner adds."""
        if self.env is None:
            return
        self.env["finished"] = now()
        self.env.update(self.end_fields())
        rundir.write_env(self.out, self.env)
