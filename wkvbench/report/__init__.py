"""Reading runs, drawing the report, comparing two runs.

``wkvbench report`` (:mod:`.cli`) and ``wkvbench compare`` (:mod:`.compare`) read only a run
directory (:mod:`.load`); the layout of the package: docs/notes/report.md.
"""

from wkvbench.report.load import Env, Run, load_run

__all__ = ["Env", "Run", "load_run"]
