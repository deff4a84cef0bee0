"""Suites: TOML files (or command-line flags) that declare a sweep's axes, validated up front.

Here: the TOML parser, the ad-hoc sweep from flags (:func:`suite_from_flags`) and the command
line's edits of a suite file (:func:`edit_suite`: ``--op``, ``--impl``, ``--exclude``, run
settings); :mod:`wkvbench.harness.run_args` turns ``wkvbench run``'s arguments into the suite to
run. The run settings are declared once, in :class:`RunSettings` (default, kind and help per
field): the parser, the ``--budget-s``-style flags and their validation all read it.

The suite file format, every key with its default, is in ``docs/notes/harness.md`` (Suite files).

Errors raise :class:`SuiteError` (a ValueError) naming the file and the key, e.g.
``suites/x.toml: group[2].tokens: expected positive integers, got 'many'``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from wkvbench import ops as _ops
from wkvbench import opspec, presets, schema

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda", "auto")


#: The key columns that identify a case (every implementation of it shares them).
CASE_KEY = tuple(k for k in schema.KEY if k != "impl")


def case_id_of(row) -> tuple:
    """A row's (or samples record's, or case's fields') case: its key without the implementation."""
    return tuple(v for k, v in zip(schema.KEY, schema.key_of(row), strict=True) if k != "impl")


class SuiteError(ValueError):
    """A suite (file or flags) that cannot be run; the message names the key."""


def _setting(default, kind: str, help: str, choices: tuple[str, ...] = (), switch: bool = False):
    """A run setting: its default, its kind (str, pos, nonneg, posint, nonnegint), its help, (str) its
    allowed values, and whether it is an on/off switch (0 or 1; a bare ``--flag`` on the command line is 1)."""
    return field(default=default, metadata={"kind": kind, "help": help, "choices": choices, "switch": switch})


@dataclass(frozen=True)
class RunSettings:
    """A suite's ``[run]`` table; each field is also a ``wkvbench run`` flag (``--budget-s``)."""

    device: str = _setting("auto", "str", "cpu, cuda or auto (cuda when there is one)", DEVICES)
    budget_s: float = _setting(1.0, "pos", "sampling time per cell")
    warmup_s: float = _setting(0.1, "nonneg", "warm-up time per cell")
    rounds: int = _setting(5, "posint", "interleaved rounds")
    min_samples: int = _setting(10, "posint", "fewest samples per cell")
    max_samples: int = _setting(1000, "posint", "most samples per cell")
    max_cell_s: float = _setting(300.0, "pos", "time limit of any step of a cell (-> timeout)")
    seed: int = _setting(0, "nonnegint", "input seed")
    check_max_tokens: int = _setting(0, "nonnegint", "check accuracy at this T for longer cases (0: full size)")
    energy_s: float = _setting(0.5, "nonneg", "seconds of back-to-back calls for NVML energy (0: off)")
    max_noise: float = _setting(0.01, "nonneg", "stop sampling a cell once rel_ci <= this (0: sample the budget)")
    profile: int = _setting(0, "nonnegint", "1: a torch.profiler pass per cell into kernels.jsonl", switch=True)
    lock_clocks: int = _setting(0, "nonnegint", "1: lock the SM clock at its maximum where permitted", switch=True)
    optimizer: str = _setting("none", "str", "network training step's optimizer: none or adamw", ("none", "adamw"))


#: The longest sequence a suite may ask for (a larger one is a typo, not a benchmark).
MAX_TOKENS = 1 << 24
#: Kind of each run setting (see :func:`_setting`).
RUN_KINDS = {f.name: f.metadata["kind"] for f in fields(RunSettings)}
RUN_CHOICES = {f.name: f.metadata["choices"] for f in fields(RunSettings)}


@dataclass(frozen=True)
class Group:
    op: str
    models: tuple[str, ...]
    impls: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    batch: tuple[int, ...] = (1,)
    tokens: tuple[int, ...] = ()
    seconds: tuple[float, ...] = ()
    dtype: tuple[str, ...] = ("float32",)
    variant: str = "realistic"
    modes: tuple[str, ...] = (_ops.DEFAULT_MODE,)
    precision: tuple[str, ...] = ("pure",)  # network cells: pure dtype and/or autocast (docs/spec.md section 8)
    checkpoint: tuple[str, ...] = ("none",)  # network training cells: activation checkpointing per block or none
    check_max_tokens: int | None = None  # this group's run.check_max_tokens (None: the run's)


@dataclass(frozen=True)
class Suite:
    name: str
    run: RunSettings
    groups: tuple[Group, ...]
    description: str = ""
    source: str = ""
    plugins: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Suite:
        """Inverse of :meth:`as_dict` (a suite stored in env.json, for ``--resume``)."""
        run = RunSettings(**data["run"])
        keep = {f.name for f in fields(Group)}  # older runs stored keys since removed (baseline)
        groups = tuple(
            Group(**{k: tuple(v) if isinstance(v, list) else v for k, v in g.items() if k in keep})
            for g in data["groups"]
        )
        return cls(
            name=data["name"],
            run=run,
            groups=groups,
            description=data.get("description", ""),
            source=data.get("source", ""),
            plugins=tuple(data.get("plugins", ())),
        )


@dataclass(frozen=True)
class Case:
    """One point of a sweep: an op at a shape, dtype and device (every implementation runs it)."""

    op: str
    model: str
    family: str
    batch: int
    tokens: int
    seconds: float
    dtype: str
    device: str
    variant: str
    mode: str
    shape_json: str = field(compare=False)
    seed: int = field(default=0, compare=False)
    check_tokens: int | None = field(default=None, compare=False)  # check at this T instead
    impl_op: str = field(default="", compare=False)  # whose implementations run it (the plan sets it)
    head_size: int | None = field(default=None, compare=False)  # matched against Impl.head_sizes (plan)
    precision: str = "pure"  # a key column: pure dtype, or float32 weights under autocast
    checkpoint: str = "none"  # a key column: activation checkpointing (none, or blocks: each block recomputed)
    optimizer: str = field(default="none", compare=False)  # the network training step's (run.optimizer)

    @property
    def shape(self) -> dict:
        return json.loads(self.shape_json)

    @property
    def case_id(self) -> tuple:
        """The cell key without the implementation (:data:`CASE_KEY`)."""
        return case_id_of({k: getattr(self, k) for k in CASE_KEY})

    def key(self, impl: str) -> tuple:
        """The key of this case's cell for ``impl`` (``wkvbench.schema.key``)."""
        return schema.key(impl=impl, **{k: getattr(self, k) for k in CASE_KEY})

    def label(self) -> str:
        mode = "" if self.mode == _ops.DEFAULT_MODE else f" {self.mode}"
        mode += "" if self.precision == "pure" else f" {self.precision}"
        mode += "" if self.checkpoint == "none" else f" checkpoint={self.checkpoint}"
        return f"{self.op} {self.model} B={self.batch} T={self.tokens} {self.dtype}{mode}"

    @property
    def data_id(self) -> tuple:
        """What the inputs and references depend on: the case without its timing mode."""
        return tuple(v for k, v in zip(CASE_KEY, self.case_id, strict=True) if k != "mode")

    def to_wire(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- validation
class _V:
    """Type checks that raise SuiteError naming ``source: key``."""

    def __init__(self, source: str, keyfmt: Callable[[str], str] | None = None):
        self.source = source
        self.keyfmt = keyfmt or (lambda k: k)

    def fail(self, key: str, msg: str):
        raise SuiteError(f"{self.source}: {self.keyfmt(key)}: {msg}")

    def keys(self, key: str, table, allowed) -> None:
        if not isinstance(table, dict):
            self.fail(key, f"expected a table, got {type(table).__name__}")
        for k in table:
            if k not in allowed:
                where = f"{key}.{k}" if key else k
                self.fail(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, key: str, x, choices=None) -> str:
        if not isinstance(x, str) or not x:
            self.fail(key, f"expected a non-empty string, got {x!r}")
        if choices is not None and x not in choices:
            self.fail(key, f"{x!r} is not one of {', '.join(choices)}")
        return x

    def strings(self, key: str, x, choices=None) -> tuple[str, ...]:
        if isinstance(x, str):
            x = [x]
        if not isinstance(x, list) or not x:
            self.fail(key, f"expected a non-empty list of strings, got {x!r}")
        return tuple(self.string(f"{key}[{i}]", v, choices) for i, v in enumerate(x))

    def number(self, key: str, x, *, integer: bool = False, minimum: float = 0, strict: bool = True):
        ok = (
            isinstance(x, int) and not isinstance(x, bool)
            if integer
            else (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x))
        )
        if ok:
            ok = x > minimum if strict else x >= minimum
        if not ok:
            kind = "an integer" if integer else "a number"
            bound = f"> {minimum}" if strict else f">= {minimum}"
            self.fail(key, f"expected {kind} {bound}, got {x!r}")
        return x

    def numbers(self, key: str, x, *, integer: bool = False) -> tuple:
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            x = [x]
        if not isinstance(x, list) or not x:
            kind = "integers" if integer else "numbers"
            self.fail(key, f"expected a non-empty list of positive {kind}, got {x!r}")
        return tuple(self.number(f"{key}[{i}]", v, integer=integer) for i, v in enumerate(x))


_GROUP_KEYS = {f.name for f in fields(Group)}


def _parse_run(v: _V, data) -> RunSettings:
    v.keys("run", data, RUN_KINDS)
    kw = {}
    for k, val in data.items():
        key, kind = f"run.{k}", RUN_KINDS[k]
        if kind == "str":
            kw[k] = v.string(key, val, RUN_CHOICES[k])
        elif kind in ("posint", "nonnegint"):
            kw[k] = v.number(key, val, integer=True, strict=kind == "posint")
        else:
            kw[k] = float(v.number(key, val, strict=kind == "pos"))
    run = RunSettings(**kw)
    if run.max_samples < run.min_samples:
        v.fail("run.max_samples", f"must be >= run.min_samples ({run.min_samples}), got {run.max_samples}")
    return run


def _parse_group(v: _V, i: int, data) -> Group:
    key = f"group[{i}]"
    if isinstance(data, dict) and "baseline" in data:
        v.fail(f"{key}.baseline", "no longer a suite key: each op's naive baseline is its record's naive_impl")
    v.keys(key, data, _GROUP_KEYS)
    if "op" not in data:
        v.fail(f"{key}.op", "missing (one of " + ", ".join(opspec.OPS) + ")")
    op = v.string(f"{key}.op", data["op"], tuple(opspec.OPS))
    models = v.strings(f"{key}.models", data.get("models", [_ops.get_op(op).default_model]))
    for j, m in enumerate(models):
        try:
            presets.get_preset(m)
        except ValueError as exc:
            v.fail(f"{key}.models[{j}]", str(exc).split(": ", 1)[-1])
    models = tuple(presets.get_preset(m).name for m in models)
    has_t, has_s = "tokens" in data, "seconds" in data
    if has_t == has_s:
        v.fail(f"{key}.tokens", "give exactly one of 'tokens' and 'seconds'")
    tokens = v.numbers(f"{key}.tokens", data["tokens"], integer=True) if has_t else ()
    seconds = tuple(float(s) for s in v.numbers(f"{key}.seconds", data["seconds"])) if has_s else ()
    if any(t > MAX_TOKENS for t in tokens):
        v.fail(f"{key}.tokens", f"{max(tokens)} tokens is over the limit of {MAX_TOKENS:,}")
    for m in models:  # every duration must give at least one token (and at most MAX_TOKENS) for every model
        for j, s in enumerate(seconds):
            try:
                n = presets.get_preset(m).tokens(s)
                if not 1 <= n <= MAX_TOKENS:
                    raise ValueError(f"{s} s gives {n} {m} tokens (1 to {MAX_TOKENS:,})")
            except ValueError as exc:
                v.fail(f"{key}.seconds[{j}]", str(exc).split(": ", 1)[-1])
    impls = v.strings(f"{key}.impls", data.get("impls", ["*"]))
    exclude = v.strings(f"{key}.exclude", data["exclude"]) if data.get("exclude") else ()
    variant = v.string(f"{key}.variant", data.get("variant", "realistic"))
    allowed_variants = _ops.get_op(op).variants
    if variant not in allowed_variants:
        v.fail(f"{key}.variant", f"{variant!r} is not one of {', '.join(allowed_variants)} for {op}")
    check_t = data.get("check_max_tokens")
    if check_t is not None:
        check_t = v.number(f"{key}.check_max_tokens", check_t, integer=True, strict=False)
    return Group(
        check_max_tokens=check_t,
        op=op,
        models=models,
        impls=impls,
        exclude=exclude,
        batch=v.numbers(f"{key}.batch", data.get("batch", [1]), integer=True),
        tokens=tokens,
        seconds=seconds,
        dtype=v.strings(f"{key}.dtype", data.get("dtype", ["float32"]), DTYPES),
        variant=variant,
        modes=tuple(dict.fromkeys(v.strings(f"{key}.modes", data.get("modes", [_ops.DEFAULT_MODE]), schema.MODES))),
        **{  # network cells: precision (pure, autocast) and checkpointing (none, blocks); default the first
            k: tuple(dict.fromkeys(v.strings(f"{key}.{k}", data.get(k, [known[0]]), known)))
            for k, known in (("precision", schema.PRECISIONS), ("checkpoint", schema.CHECKPOINTS))
        },
    )


def parse_suite(data: dict, source: str = "suite", keyfmt: Callable[[str], str] | None = None) -> Suite:
    """Validate a parsed TOML document (or an equivalent dict) into a :class:`Suite`."""
    v = _V(source, keyfmt)
    v.keys("", data, {"name", "description", "run", "group", "plugins"})
    groups = data.get("group")
    if not isinstance(groups, list) or not groups:
        v.fail("group", "expected at least one [[group]] table")
    plugins = v.strings("plugins", data["plugins"]) if data.get("plugins") else ()
    return Suite(
        name=v.string("name", data.get("name", Path(source).stem or "adhoc")),
        description=str(data.get("description", "")),
        run=_parse_run(v, data.get("run", {})),
        groups=tuple(_parse_group(v, i, g) for i, g in enumerate(groups)),
        source=source,
        plugins=plugins,
    )


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite TOML file."""
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML: {exc}") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise SuiteError(f"{path}: cannot read it as UTF-8 text ({type(exc).__name__})") from None
    suite = parse_suite(data, str(path))
    return replace(suite, plugins=tuple(plugin_path(p, path.resolve().parent) for p in suite.plugins))


#: The flag that sets each group field (errors in flags, and ``--resume`` refusals, name it).
FLAG_OF = {k: f"--{k}" for k in "op batch tokens seconds dtype variant exclude precision checkpoint".split()}
FLAG_OF.update(impls="--impl", models="--model", modes="--mode", check_max_tokens="--check-max-tokens")


def _flag_key(key: str) -> str:
    """group[0].tokens[1] -> --tokens; run.budget_s -> --budget-s."""
    leaf = key.split(".", 1)[-1].split("[")[0]
    if key.startswith("run."):
        return "--" + leaf.replace("_", "-")
    return FLAG_OF.get(leaf, key)


def _split(flag: str, text: str | None, conv):
    if text is None:
        return None
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(conv(part))
        except ValueError:
            raise SuiteError(f"command line: {flag}: cannot read {part!r}") from None
    if not out:
        raise SuiteError(f"command line: {flag}: empty list")
    return out


def suite_from_flags(
    op: str,
    *,
    impls: str | None = None,
    models: str | None = None,
    batch: str | None = None,
    tokens: str | None = None,
    seconds: str | None = None,
    dtype: str | None = None,
    variant: str | None = None,
    exclude: str | None = None,
    mode: str | None = None,
    run: dict | None = None,
    precision: str | None = None,
    checkpoint: str | None = None,
) -> Suite:
    """An ad-hoc suite from the flags of docs/spec.md section 7 (comma lists), validated like a file."""
    ops = _split("--op", op, str)
    group_common = {}
    for key, flag, text, conv in (
        ("impls", "--impl", impls, str),
        ("models", "--model", models, str),
        ("batch", "--batch", batch, int),
        ("tokens", "--tokens", tokens, int),
        ("seconds", "--seconds", seconds, float),
        ("dtype", "--dtype", dtype, str),
        ("exclude", "--exclude", exclude, str),
        ("modes", "--mode", mode, str),
        ("precision", "--precision", precision, str),
        ("checkpoint", "--checkpoint", checkpoint, str),
    ):
        val = _split(flag, text, conv)
        if val is not None:
            group_common[key] = val
    if tokens is None and seconds is None:
        group_common["tokens"] = [512]
    if tokens is not None and seconds is not None:
        raise SuiteError("command line: --tokens: give --tokens or --seconds, not both")
    if variant:
        group_common["variant"] = variant
    groups = []
    for o in ops:
        g = dict(group_common, op=o)
        if len(ops) > 1 and "models" not in group_common and o in opspec.OPS:
            g["models"] = [opspec.OPS[o].default_model]
        groups.append(g)
    data = {"name": "adhoc", "description": "ad-hoc sweep from command-line flags", "group": groups}
    if run:
        data["run"] = {k: v for k, v in run.items() if v is not None}
    return parse_suite(data, "command line", _flag_key)


def with_overrides(suite: Suite, run: dict) -> Suite:
    """``suite`` with run settings replaced by the given (non-None) values, validated."""
    merged = {**asdict(suite.run), **{k: v for k, v in run.items() if v is not None}}
    return replace(suite, run=_parse_run(_V("command line", _flag_key), merged))


# ----------------------------------------------------------------------------- the command line
def plugin_path(plugin: str, base: Path | None = None) -> str:
    """A plugin as the registry loads it: a ``.py`` path made absolute -- relative to ``base``
    (the suite file's folder) when given, else to the working directory -- or a module name as is."""
    if plugin.endswith(".py") or os.sep in plugin or "/" in plugin:
        p = Path(plugin)
        if not p.is_absolute():
            p = (base if base is not None else Path.cwd()) / p
        return str(p.resolve())
    return plugin


def edit_suite(
    suite: Suite,
    *,
    ops: str | None = None,
    impls: str | None = None,
    exclude: str | None = None,
    modes: str | None = None,
    run=None,
    precision: str | None = None,
    checkpoint: str | None = None,
) -> Suite:
    """``suite`` as command-line flags edit it: keep the groups of ``ops``; ``impls`` replaces each
    group's implementations; ``exclude`` adds to each group's exclusions; ``modes`` replaces each
    group's timing modes; ``run`` overrides settings."""
    groups = suite.groups
    if ops:
        keep = _split("--op", ops, str)
        for op in keep:
            if op not in opspec.OPS:
                raise SuiteError(f"command line: --op: unknown op {op!r}; known: {', '.join(opspec.OPS)}")
        groups = tuple(g for g in groups if g.op in keep)
        if not groups:
            have = ", ".join(dict.fromkeys(g.op for g in suite.groups))
            raise SuiteError(f"command line: --op: the suite has no group for {ops!r} (it has {have})")
    if impls:
        names = tuple(_split("--impl", impls, str))
        groups = tuple(replace(g, impls=names) for g in groups)
    if exclude:
        names = tuple(_split("--exclude", exclude, str))
        groups = tuple(replace(g, exclude=g.exclude + names) for g in groups)
    if modes:
        names = tuple(dict.fromkeys(check_modes(modes)))
        groups = tuple(replace(g, modes=names) for g in groups)
    axes = {"precision": (precision, schema.PRECISIONS), "checkpoint": (checkpoint, schema.CHECKPOINTS)}
    for name, (text, known) in ((k, v) for k, v in axes.items() if v[0]):  # network cells' settings
        names = tuple(dict.fromkeys(_split(f"--{name}", text, str)))
        if bad := [p for p in names if p not in known]:
            raise SuiteError(f"command line: --{name}: unknown {bad}; known: {', '.join(known)}")
        groups = tuple(replace(g, **{name: names}) for g in groups)
    return with_overrides(replace(suite, groups=groups), run or {})


def check_modes(text: str) -> list[str]:
    """The timing modes of a ``--mode`` comma list; a SuiteError naming an unknown one."""
    modes = _split("--mode", text, str)
    bad = [m for m in modes if m not in schema.MODES]
    if bad:
        raise SuiteError(
            f"command line: --mode: unknown mode(s) {', '.join(map(repr, bad))}; known: {', '.join(schema.MODES)}"
        )
    return modes
