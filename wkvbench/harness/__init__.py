"""The benchmark harness: timing, suites, isolated workers, results, and ``wkvbench run``.

* :mod:`~wkvbench.harness.timing` -- statistics, the GPU (CUDA events, L2 flush) and CPU
  (``perf_counter``) timers, sample planning, the copy-bandwidth probe;
* :mod:`~wkvbench.harness.suite` -- TOML suites and ad-hoc flag sweeps, validated; the command
  line's edits of a suite; the run settings;
* :mod:`~wkvbench.harness.plan` -- a suite expanded into cases and cells, in run order;
* :mod:`~wkvbench.harness.predict` -- which cells to skip from what smaller cells showed;
* :mod:`~wkvbench.harness.worker` -- the worker process every implementation call runs in, so
  that a crash, hang or CUDA fault costs one cell, not the sweep;
* :mod:`~wkvbench.harness.rundir` -- the run directory: layout, the one reader and writer of each
  file (torn last lines dropped, damaged lines named), the one-writer lock;
* :mod:`~wkvbench.harness.store` -- ``results.csv`` / ``samples.jsonl``, flushed row by row,
  typed rows, resume and de-duplication by the cell key (``wkvbench.schema.key_of``);
* :mod:`~wkvbench.harness.nvml` -- GPU facts, snapshots and the energy counter through NVML;
* :mod:`~wkvbench.harness.sweep`, :mod:`~wkvbench.harness.runner` -- a sweep's shared part, and
  the one-worker engine (a cell's worker steps, rows appended as each cell finishes);
* :mod:`~wkvbench.harness.run_command`, :mod:`~wkvbench.harness.run_args` -- the ``run``
  subcommand above the engines, and the suite its arguments ask for;
* :mod:`~wkvbench.harness.shard`, :mod:`~wkvbench.harness.pool` -- ``run --shard K/N`` and
  ``run --gpus``/``--workers`` (one pinned worker per GPU, one queue, one writer);
* :mod:`~wkvbench.harness.cluster`, :mod:`~wkvbench.harness.status`, :mod:`~wkvbench.harness.merge`
  -- ``submit`` (submitit job arrays of shards), ``status`` and ``merge``.
"""
