"""summary.md of the GPU check from synthetic tables covering every branch of every table.

Statuses ok, wrong, failed, oom, timeout and skipped; a training baseline that did not run; fla
measured in its own stage for one batch and missing for the other; verify rows of every kind
(output, gradients, the concurrency checks); a launch configuration over the bar.
"""

import csv
import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from wkvbench import presets
from wkvbench.schema import COLUMNS

ROOT = Path(__file__).resolve().parents[1]


def _helpers():
    spec = importlib.util.spec_from_file_location("gpu_check_helpers", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(op, impl, model, batch, seconds, dtype, status="ok", ms=None, mode="fwd", **kw):
    tokens = presets.get_preset(model).tokens(seconds)
    r = dict(op=op, impl=impl, model=model, batch=batch, tokens=tokens, seconds=seconds, dtype=dtype, mode=mode,
             device="cuda", variant="realistic", status=status, gpu="Test GPU", schema_version=1)  # fmt: skip
    if status == "ok":
        r.update(median_ms=ms, p20_ms=ms, p80_ms=ms, n_samples=5, gpu_ms=ms * 0.9 if ms else None)
    else:
        r.setdefault("note", f"{status} here")
    r.update(kw)
    return r


def _write(run: Path, rows):
    run.mkdir(parents=True)
    with open(run / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (run / "env.json").write_text(json.dumps({"gpu": {"name": "Test GPU"}, "copy_bandwidth_gbs": 3000.0}))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    rows, fla = [], []
    for batch in (1, 8):
        for s in (10.24, 81.92, 327.68):
            f = s / 81.92
            rows += [
                _row("bi_wkv7", "triton_chunked", "A-RWKV-B", batch, s, "bfloat16", ms=2.0 * f, pct_copy_bw=50.0),
                _row("bi_wkv7", "torch_chunked", "A-RWKV-B", batch, s, "bfloat16", ms=20.0 * f, pct_copy_bw=5.0),
                _row("bi_wkv7", "cupy_cuda", "A-RWKV-B", batch, s, "bfloat16", "wrong", rel_err=0.5),
                _row("attention", "sdpa_flash", "AST-B", batch, s, "bfloat16", ms=20.0 * f * f),
                _row("bi_selective_scan", "torch_chunked", "AuM-B", batch, s, "bfloat16", ms=8.0 * f),
            ]
            eager = _row("attention", "torch_eager", "AST-B", batch, s, "float16", ms=40.0 * f * f)
            rows.append(eager if s < 300 else _row("attention", "torch_eager", "AST-B", batch, s, "float16", "oom"))
    fla.append(_row("bi_wkv7", "fla_chunk", "A-RWKV-B", 8, 327.68, "bfloat16", ms=3.0 * 4))
    train = dict(mode="fwd_bwd")
    rows += [
        _row("bi_wkv7", "triton_chunked", "A-RWKV-B", 8, 327.68, "bfloat16", ms=10.0, saved_bytes=2**30,
             peak_mem_bytes=3 * 2**30, grad_worst="dw", grad_rel_err=1e-3, **train),
        _row("bi_wkv7", "numba_cuda", "A-RWKV-B", 8, 327.68, "bfloat16", "wrong", **train),
        _row("bi_wkv7", "cupy_cuda", "A-RWKV-B", 8, 327.68, "bfloat16", "failed", **train),
        _row("bi_wkv7", "triton_recurrent", "A-RWKV-B", 8, 327.68, "bfloat16", "oom", **train),
        _row("bi_wkv7", "audiorwkv_catflip", "A-RWKV-B", 8, 327.68, "bfloat16", "timeout", **train),
        _row("bi_wkv7", "triton_chunked", "A-RWKV-T", 1, 0.16, "bfloat16", ms=5.0, saved_bytes=2**20,
             peak_mem_bytes=2**21, grad_worst="dk", grad_rel_err=2e-3, **train),
        _row("bi_wkv7", "audiorwkv_catflip", "A-RWKV-T", 1, 0.16, "bfloat16", ms=15.0, saved_bytes=2**22,
             peak_mem_bytes=2**22, grad_worst="dr", grad_rel_err=2e-3, **train),
    ]  # fmt: skip
    fla.append(_row("bi_wkv7", "fla_chunk", "A-RWKV-B", 8, 327.68, "bfloat16", "skipped", **train))
    _write(work / "run", rows)
    _write(work / "run-fla", fla)
    (work / "stages.tsv").write_text("preflight\t20\t4\t0\nverify\t90\t91\tcut off\nfla\t45\t0\tskipped: absent\n")
    (work / "preflight.md").write_text("## Preflight\n\n- python 3.12\n")
    from wkvbench.verify import Check

    checks = [Check("bi_wkv7", "triton_chunked", "triton", "B1xT5", "bfloat16", "cuda", s, note=f"n-{s}")
              for s in ("ok", "wrong", "failed", "oom", "timeout", "skipped")]  # fmt: skip
    checks += [
        Check("bi_wkv7", "cupy_cuda", "cupy", "B1xT5", "bfloat16", "cuda", "ok", check="grad", grad_worst="dw"),
        Check("bi_wkv7", "triton_chunked", "triton", "B1xT16", "bfloat16", "cuda", "ok", check="ticket_wait",
              note="hold=20000: 4 of 4 tiles waited"),
        Check("bi_wkv7", "cupy_cuda", "cuda", "B1xT37", "bfloat16", "cuda", "skipped", check="racecheck",
              note="compute-sanitizer not found"),
    ]  # fmt: skip
    with open(work / "verify.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[f.name for f in dataclasses.fields(Check)])
        w.writeheader()
        w.writerows(dataclasses.asdict(c) for c in checks)
    sweep = [
        dict(impl="triton_chunked", param="block_v", value=16, default=16, batch=8, tokens=16384, status="ok",
             median_ms=2.0, gpu_ms=1.8, rel_err=1e-3, tol=4e-3),
        dict(impl="triton_chunked", param="block_v", value=32, default=16, batch=8, tokens=16384, status="ok",
             median_ms=1.5, gpu_ms=1.4, rel_err=1e-3, tol=4e-3),
        dict(impl="triton_chunked", param="block_v", value=64, default=16, batch=8, tokens=16384, status="wrong",
             median_ms=1.0, gpu_ms=0.9, rel_err=1e-1, tol=4e-3),
        dict(impl="cupy_cuda", param="split", value=1, default=1, batch=8, tokens=16384, status="skipped",
             note="CuPy absent"),
    ]  # fmt: skip
    with open(work / "sweep.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=sorted({k for r in sweep for k in r} | {"note", "gpu_ms"}))
        w.writeheader()
        w.writerows(sweep)
    return work, _helpers().summary(work)


def _section(text, title):
    return text.split(title, 1)[1].split("\n## ", 1)[0]


def test_preflight_and_stages_come_first(work):
    _, text = work
    assert text.index("## Preflight") < text.index("## Stages") < text.index("## Headline")
    assert "| verify | 90 | 91 | cut off |" in text and "| fla | 45 | 0 | skipped: absent |" in text


def test_headline_rows_at_both_durations_with_labelled_ratios(work):
    _, text = work
    head = _section(text, "## Headline")
    rows = [ln for ln in head.splitlines() if ln.startswith(("| 1 |", "| 8 |"))]
    assert [ln.split(" | ")[1] for ln in rows] == ["81.92", "327.68"] * 2, rows  # 10.24 s left out
    assert "torch_eager 40 ms (20x at 81.92 s)" in rows[0]  # eager fits at 81.92 s
    assert "torch_eager: oom" in rows[1] and "sdpa_flash 320 ms (40x at 327.68 s)" in rows[1]
    assert "torch_chunked 32 ms (4x at 327.68 s)" in rows[1]  # the Mamba scan
    assert "not measured (fla-core" in rows[1]  # batch 1: fla missing
    assert "fla_chunk 12 ms (1.5x at 327.68 s)" in rows[3]  # batch 8: from run-fla/
    assert all("triton_chunked" in r for r in rows) and "| 50 |" in rows[1]  # best impl, % copy bandwidth


def test_training_table_every_status_and_missing_baselines(work):
    _, text = work
    train = _section(text, "## Training")
    lines = {ln.split(" | ")[3]: ln for ln in train.splitlines() if ln.startswith("| 8 |")}
    for impl, status in (("numba_cuda", "wrong"), ("cupy_cuda", "failed"), ("triton_recurrent", "oom"),
                         ("audiorwkv_catflip", "timeout"), ("fla_chunk", "skipped")):  # fmt: skip
        assert f"| {status}: {status} here |" in lines[impl], lines[impl]
    ok = lines["triton_chunked"]
    assert "| ok | 10 | 9 | dw 0.001 | 1024 | 3072 |" in ok
    assert "audiorwkv_catflip timeout" in ok and "fla_chunk skipped" in ok  # baselines that did not run
    (small,) = [ln for ln in train.splitlines() if ln.startswith("| 1 |") and "triton_chunked" in ln]
    assert "| 3x | no fla_chunk row | 0.5x |" in small  # vs catflip, fla missing, peak vs catflip


def test_verify_and_sweep_sections(work):
    _, text = work
    ver = _section(text, "## Verify")
    assert "verify.csv: 9 rows." in ver
    assert "- fwd: 1 failed, 1 ok, 1 oom, 1 skipped, 1 timeout, 1 wrong" in ver
    assert "- grad: 1 ok" in ver and "- ticket_wait: 1 ok" in ver and "- racecheck: 1 skipped" in ver
    for s in ("wrong", "failed", "oom", "timeout"):
        assert f"- {s}: triton_chunked fwd B1xT5 bfloat16 n-{s}" in ver
    assert "4 of 4 tiles waited" in ver and "compute-sanitizer not found" in ver
    sweep = _section(text, "## Launch configurations")
    assert "| block_v=16 | 2 | block_v=32 | 1.5 | 1.4 | block_v=64: wrong |" in sweep  # the wrong one never fastest
    assert "CuPy absent" in sweep


def test_headline_section_is_what_the_check_prints_last(work, capsys, tmp_path):
    _, text = work
    h = _helpers()
    sec = h.headline_section(text)
    assert sec.startswith("## Headline") and "## Training" not in sec and sec.count("\n| 8 |") == 2
    md = tmp_path / "summary.md"
    md.write_text(text)
    assert h.main(["headline", str(md)]) == 0
    assert capsys.readouterr().out.strip() == sec
    assert h.headline_section("# nothing\n").startswith("No headline table")


def test_verify_fields_match_the_verify_table(tmp_path):
    from wkvbench.verify import Check

    h = _helpers()
    assert list(h.VERIFY_FIELDS) == [f.name for f in dataclasses.fields(Check)]
    out = tmp_path / "verify.csv"
    assert h.main(["merge-verify", str(out), str(tmp_path / "none.csv")]) == 0  # nothing verified yet
    assert out.read_text().strip() == ",".join(h.VERIFY_FIELDS)
