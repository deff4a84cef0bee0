"""Reading runs, drawing the report, comparing two runs.

``wkvbench report RUN_DIR [-o OUT_DIR]`` (:mod:`.build`) and ``wkvbench compare RUN_A RUN_B``
(:mod:`.compare`) read only what a run directory holds: ``results.csv``, ``samples.jsonl`` and
``env.json`` (:mod:`.load`). The numbers are pandas group-bys over the tidy results table
(:mod:`.analysis`), the figures matplotlib on the Agg backend (:mod:`.figures`, one module per figure, styled by
:mod:`.style`), the HTML and Markdown written by :mod:`.render`. Runs of several GPU models get one report per
model (:mod:`.machines`).
"""

from wkvbench.report.load import Env, Run, load_run

__all__ = ["Env", "Run", "load_run"]
