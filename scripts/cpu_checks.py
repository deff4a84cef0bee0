"""Stamps of ``reports/cpu-checks/*``: which commit and which kernel sources each file was made from.

``scripts/cpu_checks.sh`` (``make cpu-checks``) regenerates the folder and calls
``python scripts/cpu_checks.py stamp DIR NAME RC COMMAND`` after each file, which records in
``DIR/stamps.json``: the commit (``+dirty`` when a kernel source differs from it), the date, the
command and its exit code, and the SHA-256 of every kernel source (:func:`kernel_sources`: every
``.py``, ``.cu`` and ``.cuh`` under ``wkvbench/impls``, found by globbing, so sources moved into
per-backend packages are still found). ``python scripts/cpu_checks.py check DIR`` (and
``tests/test_cpu_checks_stamps.py``) fails when a source named in a stamp changed since: the file
no longer shows what the sources do.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMPS = "stamps.json"
#: Files of the folder that are not generated (not stamped).
UNSTAMPED = ("README.md", STAMPS)


def kernel_sources(root: Path = ROOT) -> list[Path]:
    """Every kernel source: ``wkvbench/impls/**/*.{py,cu,cuh}``, relative to ``root``, sorted."""
    base = root / "wkvbench" / "impls"
    found = {p for ext in ("py", "cu", "cuh") for p in base.rglob(f"*.{ext}") if "__pycache__" not in p.parts}
    return sorted(p.relative_to(root) for p in found)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_hashes(root: Path = ROOT) -> dict[str, str]:
    return {str(p): sha256(root / p) for p in kernel_sources(root)}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def stamp(folder: Path, name: str, rc: int, command: str) -> dict:
    """Record ``name``'s stamp in ``folder/stamps.json``; returns it."""
    if not (folder / name).exists():
        raise ValueError(f"name: {folder / name} does not exist")
    commit = _git("rev-parse", "HEAD") or "unknown"
    if _git("status", "--porcelain", "--", "wkvbench/impls"):
        commit += "+dirty"
    hashes = source_hashes()
    entry = {
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "exit_code": int(rc),
        "sources_sha256": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
        "sources": hashes,
    }
    path = folder / STAMPS
    stamps = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    stamps[name] = entry
    path.write_text(json.dumps(dict(sorted(stamps.items())), indent=1) + "\n", encoding="utf-8")
    return entry


def stale(folder: Path, root: Path = ROOT) -> list[str]:
    """What is out of date in ``folder``: unstamped files, and stamped sources changed since.

    A source named in a stamp must still hash the same; one that is gone must have moved (its
    content found among today's kernel sources).
    """
    path = folder / STAMPS
    stamps = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    now = source_hashes(root)
    contents = set(now.values())
    names = [p.name for p in sorted(folder.iterdir()) if p.name not in UNSTAMPED]
    problems = [f"{n}: no stamp" for n in names if n not in stamps]
    for name, entry in stamps.items():
        if not (folder / name).exists():
            problems.append(f"{name}: stamped but missing")
        for src, digest in entry["sources"].items():
            if src in now and now[src] != digest:
                problems.append(f"{name}: {src} changed since {entry['commit'][:12]}")
            elif src not in now and digest not in contents:
                problems.append(f"{name}: {src} is gone and its content is nowhere in wkvbench/impls")
    return problems


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) >= 5 and argv[0] == "stamp":
        stamp(Path(argv[1]), argv[2], int(argv[3]), " ".join(argv[4:]))
        return 0
    if len(argv) == 2 and argv[0] == "check":
        problems = stale(Path(argv[1]))
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    print("usage: cpu_checks.py stamp DIR NAME RC COMMAND... | check DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
