"""The run directory module: one reader per file (torn tails, damaged lines), atomic writers, the lock."""

import json
import os
import resource
import subprocess
import sys
import textwrap

import pytest

from wkvbench.harness import rundir
from wkvbench.harness.store import RunStore, StoreError
from wkvbench.schema import COLUMNS, SCHEMA_VERSION


def _row(impl, ms="1.5"):
    base = dict.fromkeys(COLUMNS, "")
    base.update(schema_version=SCHEMA_VERSION, op="bi_wkv7", impl=impl, model="A-RWKV-T", batch=1, tokens=16)
    base.update(dtype="float32", device="cpu", variant="realistic", mode="fwd", status="ok", median_ms=ms)
    return [base[c] for c in COLUMNS]


def _results(tmp_path, impls=("a", "b")):
    text = rundir.csv_line(COLUMNS) + "".join(rundir.csv_line(_row(i, "10.6")) for i in impls)
    (tmp_path / rundir.RESULTS_FILE).write_text(text, encoding="utf-8")
    return text.encode()


def test_a_torn_last_row_is_dropped_at_every_byte_position(tmp_path, capsys):
    full = _results(tmp_path)
    header_end = full.index(b"\n") + 1
    first_end = full.index(b"\n", header_end) + 1
    for cut in range(len(full) + 1):
        (tmp_path / rundir.RESULTS_FILE).write_bytes(full[:cut])
        rows = rundir.read_results(tmp_path)
        whole = 2 if cut == len(full) else 1 if cut >= first_end else 0
        assert [r["impl"] for r in rows] == ["a", "b"][:whole], cut
        assert all(r["median_ms"] == 10.6 for r in rows)  # never a number cut short (10. as 10.0)
    err = capsys.readouterr().err
    assert "dropped 1 incomplete row" in err
    # said once per file state, not once per reader
    other = tmp_path / "other"
    other.mkdir()
    (other / rundir.RESULTS_FILE).write_bytes(full[:-3])
    rundir.read_results(other)
    rundir.read_table(other / rundir.RESULTS_FILE)
    assert capsys.readouterr().err.count("dropped 1 incomplete row") == 1


def test_a_damaged_middle_line_names_file_and_line(tmp_path):
    full = _results(tmp_path, impls=("a", "b", "c")).decode()
    lines = full.splitlines(keepends=True)
    lines[2] = lines[2][:40] + "\n"  # row b lost its tail but kept a newline: damage, not a torn write
    (tmp_path / rundir.RESULTS_FILE).write_text("".join(lines))
    with pytest.raises(rundir.RunDirError, match=r"results.csv: line 3: .* fields"):
        rundir.read_results(tmp_path)
    lines = full.splitlines(keepends=True)
    lines[2] = lines[2].replace("10.6", "ten")
    (tmp_path / rundir.RESULTS_FILE).write_text("".join(lines))
    with pytest.raises(rundir.RunDirError, match=r"results.csv: line 3: .*'median_ms'.*'ten'"):
        rundir.read_results(tmp_path)
    lines = full.splitlines(keepends=True)
    lines[3] = lines[3].replace(",ok,", ",great,")
    (tmp_path / rundir.RESULTS_FILE).write_text("".join(lines))
    with pytest.raises(rundir.RunDirError, match=r"line 4: unknown status 'great'"):
        rundir.read_results(tmp_path)


def test_samples_reader_drops_a_torn_tail_and_names_a_bad_line(tmp_path, capsys):
    good = [json.dumps({"op": "bi_wkv7", "impl": i, "samples_ms": [1.0]}) for i in "ab"]
    path = tmp_path / rundir.SAMPLES_FILE
    path.write_text(good[0] + "\n" + good[1][:-5])
    assert [r["impl"] for r in rundir.read_samples(tmp_path)] == ["a"]
    assert "dropped 1 incomplete samples record" in capsys.readouterr().err
    path.write_text(good[0] + "\n{oops\n" + good[1] + "\n")
    with pytest.raises(rundir.RunDirError, match=r"samples.jsonl: line 2"):
        rundir.read_samples(tmp_path)


def test_store_repairs_only_the_tail_and_says_so(tmp_path):
    full = _results(tmp_path)
    (tmp_path / rundir.RESULTS_FILE).write_bytes(full[:-4])
    said = []
    st = RunStore(tmp_path, log=said.append)
    assert len(st.rows) == 1 and "removed 1 incomplete row" in said[0]
    assert (tmp_path / rundir.RESULTS_FILE).read_bytes() == full[: full.rindex(b"\n", 0, len(full) - 1) + 1]


def test_writers_leave_no_temporary_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "env.json"

    def boom(fd):
        raise OSError(28, "No space left on device", str(target) + ".tmp")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        rundir.write_env(tmp_path, {"a": 1})
    assert list(tmp_path.iterdir()) == []
    # an append that fails half-way is cut back: the file still ends with a whole line
    path = tmp_path / "r.csv"
    path.write_text("h\nrow1\n")
    with pytest.raises(OSError):
        rundir.append_line(path, "row2,half\n")
    assert path.read_text() == "h\nrow1\n"


def test_disk_full_under_rlimit_fsize_leaves_whole_lines(tmp_path):
    """A real write past the size limit (EFBIG, as a full disk gives ENOSPC): the half line goes."""
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from wkvbench.harness import rundir
        p = {str(tmp_path / "r.csv")!r}
        open(p, "w").write("header\\n")
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
        try:
            rundir.append_line(p, "x" * 100 + "\\n")
        except OSError as exc:
            print(rundir.describe_os_error(exc))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "File too large" in out.stdout, out
    assert (tmp_path / "r.csv").read_text() == "header\n"
    assert resource.getrlimit(resource.RLIMIT_FSIZE)  # the limit applied to the child only


def test_store_schema_errors_name_the_file(tmp_path):
    (tmp_path / rundir.RESULTS_FILE).write_text("a,b\n1,2\n")
    with pytest.raises(StoreError, match=r"results.csv: columns differ"):
        RunStore(tmp_path)


LOCKER = textwrap.dedent(
    """
    import sys, time
    from wkvbench.harness import rundir
    with rundir.RunLock(sys.argv[1], "test"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


def test_one_writer_per_run_directory(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(rundir.RunLocked, match=rf"pid {proc.pid} on .* since "):
            with rundir.RunLock(tmp_path):
                pass
        assert f"pid {proc.pid}" in rundir.in_progress(tmp_path)
    finally:
        proc.kill()
        proc.wait()
    # the lock died with its process: no stale lock
    assert rundir.in_progress(tmp_path) is None
    with rundir.RunLock(tmp_path), rundir.RunLock(tmp_path):  # re-entrant within a process
        assert rundir.in_progress(tmp_path) is None
    assert rundir.slug("../../x Y") == "x-y"


class _FakeClient:
    """A worker that answers at once: ``torch_loop`` fails its check, ``torch_chunked`` is timed."""

    def __init__(self, events):
        self.events, self.alive, self.case_id, self.checked, self.starts = events, True, None, set(), 1

    def request(self, cmd, timeout, **kw):
        self.events.append((cmd, kw.get("impl")))
        if cmd == "check" and kw["impl"] == "torch_loop":
            return {"ok": True, "status": "wrong", "note": "rel_err too large"}
        if cmd == "check":
            return {"ok": True, "status": "ok", "est_ms": 1.0, "first_call_ms": 2.0}
        if cmd == "sample":
            return {"ok": True, "samples_ms": [1.0] * kw["n"]}
        return {"ok": True}

    def kill(self):
        pass

    close = kill


def test_each_cell_is_written_as_soon_as_it_is_finished(tmp_path):
    from wkvbench.harness import runner as R
    from wkvbench.harness import suite as S
    from wkvbench.harness.plan import plan

    suite = S.suite_from_flags("bi_wkv7", impls="torch_chunked,torch_loop", models="A-RWKV-T", tokens="16")
    suite = S.with_overrides(suite, {"rounds": 3, "min_samples": 2, "budget_s": 0.01})
    run = R.Runner(suite, "cpu", tmp_path, progress=False)
    events = []
    run.client = _FakeClient(events)
    append = run.store.append_row
    run.store.append_row = lambda row: (events.append(("row", row["impl"])), append(row))
    (case, impls), *_ = plan(suite, "cpu")
    run.run_case(case, impls)
    first_sample = events.index(next(e for e in events if e[0] == "sample"))
    assert events.index(("row", "torch_loop")) < first_sample  # the wrong cell did not wait for the timing
    assert events[-1] == ("row", "torch_chunked")
    assert [r["status"] for r in rundir.read_results(tmp_path)] == ["wrong", "ok"]


def test_an_older_schema_is_named_not_called_damaged(tmp_path):
    cols = [c for c in COLUMNS if c != "checkpoint"]  # a run written before the checkpoint column
    old = SCHEMA_VERSION - 1
    row = ",".join(str(old) if c == "schema_version" else "" for c in cols)
    (tmp_path / rundir.RESULTS_FILE).write_text(",".join(cols) + "\n" + row + "\n")
    with pytest.raises(rundir.RunDirError, match=rf"differ .* written with schema version {old} \(`wkvbench report"):
        rundir.read_results(tmp_path)
