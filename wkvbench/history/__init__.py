"""Per-commit history of suite runs: ``wkvbench history add|show|report|check``.

Runs are imported into one SQLite store (:mod:`.store`) through the one reader of run files
(:mod:`.ingest`); :mod:`.series` groups the stored cells into per-commit points split by
environment, :mod:`.steps` finds steps in them, :mod:`.dashboard` draws the HTML dashboard and
:mod:`.cli` wires the subcommands. Method and parameters: ``docs/notes/history.md``.
"""
