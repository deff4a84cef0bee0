"""Compile tooling of ``wkvbench kernels``: compile GPU kernels for a target without a GPU.

Each kernel module's ``compile_report(cc)`` uses it: the compilers' tools (:func:`find_ptxas`,
:func:`find_nvcc`, :func:`nvrtc_version`, :func:`triton_tool`), their output (:func:`parse_ptxas`,
:func:`cuobjdump_usage`, :func:`resource_row`) and Triton's compile loop
(:func:`triton_compile_rows`). A check whose tool is not installed raises :class:`ToolMissing`;
:func:`skipped_rows` turns it into rows that say ``skipped: needs pip install 'wkvbench[<extra>]'``
instead of a compile error. What a kernel needs at run time (availability probes, launch glue) is
``_gpu.py``. The leading underscore keeps this module out of the implementation modules.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable

from wkvbench.impls import _gpu


class ToolMissing(RuntimeError):
    """A compile check's tool is not installed here: the check is skipped, not failed.

    ``needs`` says what brings the tool, e.g. ``needs pip install 'wkvbench[compile]'``.
    """

    def __init__(self, needs: str, detail: str = ""):
        self.needs = needs
        self.detail = detail
        super().__init__(needs + (f" ({detail})" if detail else ""))

    @classmethod
    def extra(cls, extra: str, detail: str = "") -> ToolMissing:
        """The tool comes with the package's optional dependencies ``extra``."""
        return cls(f"needs pip install 'wkvbench[{extra}]'", detail)


def skipped_rows(impls: Iterable[str], exc: ToolMissing) -> list[dict]:
    """One row per implementation whose compile check cannot run here, with the reason."""
    return [{"impl": name, "kernel": "-", "config": "-", "skipped": str(exc)} for name in impls]


def report_or_skip(impls: Iterable[str], make_rows: Callable[[], list[dict]]) -> list[dict]:
    """``make_rows()``, or :func:`skipped_rows` if one of its tools is missing."""
    try:
        return make_rows()
    except ToolMissing as exc:
        return skipped_rows(impls, exc)


def find_ptxas() -> str | None:
    """A ptxas: ``$PTXAS``, the one on ``PATH``, next to nvcc, or the one bundled with Triton."""
    cands = [os.environ.get("PTXAS", ""), shutil.which("ptxas") or ""]
    nvcc = shutil.which("nvcc") or "/usr/local/bin/nvcc"
    cands.append(os.path.join(os.path.dirname(nvcc), "ptxas"))
    triton, _ = _gpu.try_import("triton")
    if triton is not None:
        cands.append(os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas"))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def find_nvcc() -> str | None:
    """nvcc on ``PATH`` or at the usual toolkit locations."""
    for cand in (shutil.which("nvcc"), "/usr/local/bin/nvcc", "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand):
            return cand
    return None


def nvrtc_version() -> tuple[int, int]:
    """``(major, minor)`` of the NVRTC that ``cuda.bindings`` loads; :class:`ToolMissing` if none."""
    try:
        from cuda.bindings import nvrtc

        res, major, minor = nvrtc.nvrtcVersion()
        if int(res) != 0:
            raise RuntimeError(f"nvrtcVersion returned {res}")
    except Exception as exc:
        raise ToolMissing.extra("compile", f"NVRTC: {type(exc).__name__}: {exc}") from exc
    return int(major), int(minor)


def tool_release(tool: str) -> str:
    """``"13.0"`` from ``tool --version`` (ptxas, nvcc), ``"?"`` if it does not say."""
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"release ([\d.]+)", out)
    return m.group(1) if m else "?"


_PTXAS_ENTRY = re.compile(r"(?:Compiling entry function|Function properties for) '?(\w+)'?")
_PTXAS_FIELDS = (
    ("stack_bytes", re.compile(r"(\d+) bytes stack frame")),
    ("spill_stores", re.compile(r"(\d+) bytes spill stores")),
    ("spill_loads", re.compile(r"(\d+) bytes spill loads")),
    ("registers", re.compile(r"Used (\d+) registers")),
    ("shared_bytes", re.compile(r"(\d+) bytes smem")),
)


def parse_ptxas(log: str) -> dict[str, dict]:
    """``ptxas -v`` output -> {entry name: registers, shared_bytes, stack_bytes, spill_stores, spill_loads}."""
    stats: dict[str, dict] = {}
    cur = None
    for line in log.splitlines():
        m = _PTXAS_ENTRY.search(line)
        if m:
            cur = stats.setdefault(
                m.group(1),
                {"registers": None, "shared_bytes": 0, "stack_bytes": 0, "spill_stores": 0, "spill_loads": 0},
            )
            continue
        if cur is None:
            continue
        for key, pat in _PTXAS_FIELDS:
            mm = pat.search(line)
            if mm:
                cur[key] = int(mm.group(1))
    return stats


def run_ptxas(ptxas: str, ptx: str, cc: int) -> str:
    """``ptxas -arch=sm_<cc> -v`` on PTX text; its log (RuntimeError with the log if it fails)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run(
            [ptxas, f"-arch=sm_{cc}", "-v", "-o", os.path.join(tmp, "k.cubin"), src],
            capture_output=True,
            text=True,
            timeout=120,
        )
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed: {text.strip()[-2000:]}")
    return text


def resource_row(stats: dict) -> dict:
    """The row fields of one kernel's ``parse_ptxas`` entry (local = stack frame + spill stores)."""
    return {
        "registers": stats["registers"],
        "shared_bytes": stats["shared_bytes"],
        "local_bytes": stats["stack_bytes"] + stats["spill_stores"],
        "spill_bytes": stats["spill_stores"] + stats["spill_loads"],
    }


def triton_tool(name: str) -> str:
    """Path of a binary bundled with Triton's NVIDIA backend (``ptxas``, ``cuobjdump``)."""
    triton, err = _gpu.try_import("triton")
    if triton is None:
        raise ToolMissing.extra("triton", err)
    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.isfile(path):
        raise ToolMissing.extra("triton", f"{name} is not bundled with this triton")
    return path


def _cuobjdump(cubin: bytes, flag: str) -> str:
    """Triton's bundled cuobjdump run with ``flag`` on a cubin; its standard output."""
    tool = triton_tool("cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        proc = subprocess.run([tool, flag, f.name], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"cuobjdump {flag} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def cuobjdump_usage(cubin: bytes) -> dict:
    """``{"REG": .., "STACK": .., "SHARED": .., "LOCAL": ..}`` of a cubin, from Triton's cuobjdump."""
    text = _cuobjdump(cubin, "--dump-resource-usage")
    return {key: int(val) for key, val in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", text)}


#: FLOPs per warp-level instruction. ``HMMA.<m><n><k>`` (mma.sync, one warp): m*n*k*2, e.g.
#: HMMA.1688.F32.TF32 = 16*8*8*2 = 2048, HMMA.16816.F32.BF16 = 4096; ``HGMMA.<m>x<n>x<k>`` (wgmma,
#: one warpgroup of 4 warps): m*n*k*2 / 4 per warp; FFMA: 32 lanes x 2 = 64.
_HMMA = re.compile(r"\bHMMA\.(16)(8)(\d+)\.")
_HGMMA = re.compile(r"\bHGMMA\.(\d+)x(\d+)x(\d+)\.")
_FFMA = re.compile(r"\bFFMA\b")
FFMA_FLOPS = 64


def sass_text(cubin: bytes) -> str:
    """The SASS of a cubin, from Triton's bundled cuobjdump (``-sass``)."""
    return _cuobjdump(cubin, "-sass")


def dot_mix(sass: str) -> dict:
    """Static tensor-core share of a kernel's multiply-add FLOPs, from its SASS.

    Counts the instructions in the code (static: a loop body counts once) and weighs them by
    the FLOPs one warp issues with each (:data:`FFMA_FLOPS`, the ``HMMA``/``HGMMA`` shapes above).
    ``tensor_core_pct`` = tensor-core FLOPs / (tensor-core + FFMA FLOPs) x 100. Every FFMA counts,
    the element-wise ones too, so it is a lower bound on the share of the dot FLOPs; 3xTF32 dots
    count their three issued products.
    """
    mma = ffma = tc_flops = 0
    for line in sass.splitlines():
        m = _HMMA.search(line)
        if m:
            mma += 1
            tc_flops += int(m.group(1)) * int(m.group(2)) * int(m.group(3)) * 2
            continue
        m = _HGMMA.search(line)
        if m:
            mma += 1
            tc_flops += int(m.group(1)) * int(m.group(2)) * int(m.group(3)) * 2 // 4
            continue
        if _FFMA.search(line):
            ffma += 1
    total = tc_flops + FFMA_FLOPS * ffma
    return {"mma": mma, "ffma": ffma, "tensor_core_pct": round(100.0 * tc_flops / total, 1) if total else 0.0}


def triton_compile_rows(variants: list[dict], cc: int) -> list[dict]:
    """Compile Triton kernel variants for ``sm_<cc>`` without a GPU; one row per variant.

    A variant: ``impl``, ``fn`` (a ``@triton.jit`` function), ``signature``, ``constexprs``,
    ``options`` (num_warps, ...), ``config`` (the row's label) and optionally ``align`` (give
    pointer arguments the 16-byte divisibility hint a real launch gives them). Call it without
    ``TRITON_INTERPRET`` (``wkvbench kernels`` runs it in a clean subprocess). ``local_bytes`` is
    the cubin's local memory plus stack (register spills show up there); ``shared_bytes`` the
    shared memory Triton allocates (cuobjdump's SHARED adds a fixed 1 KB reservation at sm_90);
    ``mma``, ``ffma``, ``tensor_core_pct`` the SASS instruction mix (:func:`dot_mix`). A variant that
    does not compile gets an ``error`` and the others still run.
    """
    triton, err = _gpu.try_import("triton")
    if triton is None:
        raise ToolMissing.extra("triton", err)
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    triton_tool("cuobjdump")  # a missing tool skips the whole check instead of failing every row
    target = GPUTarget("cuda", cc, 32)
    rows = []
    for var in variants:
        sig = var["signature"]
        attrs = None
        if var.get("align"):
            attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(sig) if sig[n].startswith("*")}
        row = {"impl": var["impl"], "kernel": var["fn"].__name__, "config": var["config"],
               "compiler": f"triton {triton.__version__} ptxas"}  # fmt: skip
        try:
            src = ASTSource(var["fn"], sig, constexprs=var["constexprs"], attrs=attrs)
            ck = triton.compile(src, target=target, options=var["options"])
            use = cuobjdump_usage(ck.asm["cubin"])
            row.update(registers=use.get("REG", -1), shared_bytes=int(ck.metadata.shared),
                       local_bytes=use.get("LOCAL", 0) + use.get("STACK", 0))  # fmt: skip
            row.update(dot_mix(sass_text(ck.asm["cubin"])))
        except Exception as exc:  # report, don't stop: one broken variant must not hide the others
            row.update(registers=-1, shared_bytes=-1, local_bytes=-1, error=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return rows
