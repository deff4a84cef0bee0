"""``wkvbench count --ncu``: Nsight Compute's CSV parsed, and the command run through a fake ``ncu``."""

import os
import stat
import sys

import pytest

from wkvbench import ncu

HEADER = (
    '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Section Name",'
    '"Metric Name","Metric Unit","Metric Value"'
)
CSV = """==PROF== Connected to process 123
==PROF== Profiling "kernel_a": 0%....100% - 1 pass
HEADER
"0","123","python","h","kernel_a","1","7","Command line profiler metrics","dram__bytes_read.sum","byte","1,048,576"
"0","123","python","h","kernel_a","1","7","Command line profiler metrics","dram__bytes_write.sum","byte","4096"
"1","123","python","h","kernel_b","1","7","Command line profiler metrics","dram__bytes_read.sum","Kbyte","2"
"1","123","python","h","kernel_b","1","7","Command line profiler metrics","dram__bytes_write.sum","byte","0"
""".replace("HEADER", HEADER)


def test_parse_csv_sums_kernels_and_units():
    got = ncu.parse_csv(CSV)
    assert got == {
        "dram_read_bytes": 1048576 + 2000,
        "dram_write_bytes": 4096,
        "kernels": 2,
        "dram_bytes": 1048576 + 2000 + 4096,
    }
    with pytest.raises(ValueError, match="ncu"):
        ncu.parse_csv("==PROF== no kernels\n")
    with pytest.raises(ValueError, match="unit"):
        ncu.parse_csv(CSV.replace('"Kbyte"', '"furlong"'))


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for ncu")
def test_dram_bytes_runs_ncu_on_one_profiled_call(tmp_path, monkeypatch):
    args_file = tmp_path / "args"
    fake = tmp_path / "ncu"
    (tmp_path / "out.csv").write_text(CSV)
    fake.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {args_file}\necho "interp=$TRITON_INTERPRET" >> {args_file}\n'
        f"cat {tmp_path / 'out.csv'}\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    got = ncu.dram_bytes("bi_wkv7", "triton_chunked", {"B": 1, "T": 8, "H": 1, "N": 64})
    assert got["dram_bytes"] == 1048576 + 2000 + 4096
    argv = args_file.read_text().splitlines()
    assert argv[:2] == ["--profile-from-start", "off"]
    assert argv[-1] == "interp="  # the profiled child compiles its kernels
    assert "dram__bytes_read.sum,dram__bytes_write.sum" in argv and "cudaProfilerStart()" in "\n".join(argv)
    fake.write_text("#!/bin/sh\necho 'ERR_NVGPUCTRPERM' >&2\nexit 1\n")
    with pytest.raises(RuntimeError, match="ERR_NVGPUCTRPERM"):
        ncu.dram_bytes("bi_wkv7", "triton_chunked", {"B": 1, "T": 8, "H": 1, "N": 64})
    with pytest.raises(RuntimeError, match="not found"):
        ncu.dram_bytes("bi_wkv7", "triton_chunked", {}, ncu="no-such-ncu-here")
