"""The cells a sweep measures, shared by the one-worker :class:`~.runner.Runner` and the :class:`~.pool.PoolRunner`.

``run`` is either runner: it has ``resume``, ``store`` (a :class:`~.store.RunStore`), ``predictor``
and ``log``; ``planned`` is a list of ``(case, [(impl, reason), ...])``.
"""

from __future__ import annotations


def pending_cells(run, planned) -> int:
    """How many cells of ``planned`` ``run`` (a Runner or a pool) will measure; logs when there are none.

    With ``--resume`` the cells already in the store are skipped and the predictor learns from their rows.
    """
    if run.resume:
        run.predictor.learn_rows(run.store.rows.values(), [c for c, _ in planned])
    total = sum(1 for c, impls in planned for name, _ in impls if not (run.resume and run.store.has(c.key(name))))
    if total == 0:
        run.log(f"nothing to do: every cell is already in {run.store.results}")
    return total


def replace_earlier(run, planned) -> None:
    """A plain re-run (no ``--resume``) replaces the rows of the cells it measures."""
    if not run.resume:
        dropped = run.store.drop(c.key(name) for c, impls in planned for name, _ in impls)
        if dropped:
            run.log(f"replacing {dropped} earlier row(s) of these cells in {run.store.results}")
