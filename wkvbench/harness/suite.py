"""Suites: TOML files (or command-line flags) that declare a sweep's axes, validated up front.

A suite is global run settings plus groups of axes, one op per group::

    name = "smoke"
    description = "..."
    plugins = ["my_kernels.py"]          # optional, like --plugin

    [run]
    device = "cpu"        # cpu | cuda | auto (cuda when there is one)
    budget_s = 0.2        # sampling time per cell (repetitions adapt to it)
    warmup_s = 0.05       # warm-up time per cell
    rounds = 3            # implementations interleaved in random order over this many rounds
    min_samples = 5
    max_samples = 1000
    max_cell_s = 60       # hard limit on any one step of a cell -> status "timeout"
    seed = 0
    check_max_tokens = 0  # 0: check accuracy at full size (default). N > 0: cells with more than
                          # N tokens are checked on a case of N tokens (same model, batch, dtype,
                          # seed) and say so in their note -- for float64 references too slow at full T
    energy_s = 0.5        # back-to-back run for NVML energy per cell (GPU with an energy counter)

    [[group]]
    op = "bi_wkv7"
    impls = ["*"]         # "*": every registered impl available here for the dtype; names may be
                          # added ("*", "fla_chunk"): a named impl that cannot run gets "skipped"
    exclude = []          # names removed from impls
    models = ["A-RWKV-T"] # presets (wkvbench.presets.MODELS)
    batch = [1]
    tokens = [64, 256]    # or seconds = [10.24, 328] (converted per model family)
    dtype = ["float32"]
    variant = "realistic"     # input variant (the op record's variants; bi_wkv7: inputs.WKV7_VARIANTS)

Errors raise :class:`SuiteError` (a ValueError) naming the file and the key, e.g.
``suites/x.toml: group[2].tokens: expected positive integers, got 'many'``.

:func:`expand` turns a suite into :class:`Case` records, ordered so that each implementation
meets growing sizes (dtype, model, batch, then tokens ascending): the runner's predictions
("out of memory at a smaller size", "too slow at a shorter T") rely on that order.
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from wkvbench import ops as _ops
from wkvbench import presets, registry, schema

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


@dataclass(frozen=True)
class RunSettings:
    device: str = "auto"
    budget_s: float = 1.0
    warmup_s: float = 0.1
    rounds: int = 5
    min_samples: int = 10
    max_samples: int = 1000
    max_cell_s: float = 300.0
    seed: int = 0
    check_max_tokens: int = 0
    energy_s: float = 0.5


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
    shape_json: str = field(compare=False)
    seed: int = field(default=0, compare=False)
    check_tokens: int | None = field(default=None, compare=False)  # check at this T instead

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
        return f"{self.op} {self.model} B={self.batch} T={self.tokens} {self.dtype}"

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


_RUN_TYPES = {
    "device": "str",
    "budget_s": "pos",
    "warmup_s": "nonneg",
    "rounds": "posint",
    "min_samples": "posint",
    "max_samples": "posint",
    "max_cell_s": "pos",
    "seed": "nonnegint",
    "check_max_tokens": "nonnegint",
    "energy_s": "nonneg",
}
_GROUP_KEYS = {f.name for f in fields(Group)}


def _parse_run(v: _V, data) -> RunSettings:
    v.keys("run", data, _RUN_TYPES)
    kw = {}
    for k, val in data.items():
        key, kind = f"run.{k}", _RUN_TYPES[k]
        if kind == "str":
            kw[k] = v.string(key, val, DEVICES)
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
        v.fail(f"{key}.op", "missing (one of " + ", ".join(_ops.OPS) + ")")
    op = v.string(f"{key}.op", data["op"], tuple(_ops.OPS))
    models = v.strings(f"{key}.models", data.get("models", [_ops.get_op(op).default_model]))
    for j, m in enumerate(models):
        try:
            presets.get_model(m)
        except ValueError as exc:
            v.fail(f"{key}.models[{j}]", str(exc).split(": ", 1)[-1])
    models = tuple(presets.get_model(m).name for m in models)
    has_t, has_s = "tokens" in data, "seconds" in data
    if has_t == has_s:
        v.fail(f"{key}.tokens", "give exactly one of 'tokens' and 'seconds'")
    tokens = v.numbers(f"{key}.tokens", data["tokens"], integer=True) if has_t else ()
    seconds = tuple(float(s) for s in v.numbers(f"{key}.seconds", data["seconds"])) if has_s else ()
    for m in models:  # every duration must give at least one token for every model
        for j, s in enumerate(seconds):
            try:
                if presets.get_model(m).tokens(s) < 1:
                    raise ValueError(f"{s} s gives no {m} tokens")
            except ValueError as exc:
                v.fail(f"{key}.seconds[{j}]", str(exc).split(": ", 1)[-1])
    impls = v.strings(f"{key}.impls", data.get("impls", ["*"]))
    exclude = v.strings(f"{key}.exclude", data["exclude"]) if data.get("exclude") else ()
    variant = v.string(f"{key}.variant", data.get("variant", "realistic"))
    allowed_variants = _ops.get_op(op).variants
    if variant not in allowed_variants:
        v.fail(f"{key}.variant", f"{variant!r} is not one of {', '.join(allowed_variants)} for {op}")
    return Group(
        op=op,
        models=models,
        impls=impls,
        exclude=exclude,
        batch=v.numbers(f"{key}.batch", data.get("batch", [1]), integer=True),
        tokens=tokens,
        seconds=seconds,
        dtype=v.strings(f"{key}.dtype", data.get("dtype", ["float32"]), DTYPES),
        variant=variant,
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
    return parse_suite(data, str(path))


_FLAG_OF = {
    "op": "--op",
    "impls": "--impl",
    "models": "--model",
    "batch": "--batch",
    "tokens": "--tokens",
    "seconds": "--seconds",
    "dtype": "--dtype",
    "variant": "--variant",
    "exclude": "--exclude",
}


def _flag_key(key: str) -> str:
    """group[0].tokens[1] -> --tokens; run.budget_s -> --budget-s."""
    leaf = key.split(".", 1)[-1].split("[")[0]
    if key.startswith("run."):
        return "--" + leaf.replace("_", "-")
    return _FLAG_OF.get(leaf, key)


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
    run: dict | None = None,
) -> Suite:
    """An ad-hoc suite from CONTRACT section 7's flags (comma lists), validated like a file."""
    ops = _split("--op", op, str)
    group_common = {}
    for key, flag, text, conv in (
        ("impls", "--impl", impls, str),
        ("models", "--model", models, str),
        ("batch", "--batch", batch, int),
        ("tokens", "--tokens", tokens, int),
        ("seconds", "--seconds", seconds, float),
        ("dtype", "--dtype", dtype, str),
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
        if len(ops) > 1 and "models" not in group_common and o in _ops.OPS:
            g["models"] = [_ops.OPS[o].default_model]
        groups.append(g)
    data = {"name": "adhoc", "description": "ad-hoc sweep from command-line flags", "group": groups}
    if run:
        data["run"] = {k: v for k, v in run.items() if v is not None}
    return parse_suite(data, "command line", _flag_key)


def with_overrides(suite: Suite, run: dict) -> Suite:
    """``suite`` with run settings replaced by the given (non-None) values, validated."""
    merged = {**asdict(suite.run), **{k: v for k, v in run.items() if v is not None}}
    return replace(suite, run=_parse_run(_V("command line", _flag_key), merged))


# ----------------------------------------------------------------------------- expansion
def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SuiteError("run.device: 'cuda' requested but torch sees no CUDA device (use --device cpu)")
    return device


def case_seed(seed: int, case_id: tuple[str, ...]) -> int:
    """A stable per-case seed: the same case gets the same inputs in every run and process."""
    return (seed * 1_000_003 + zlib.crc32("|".join(map(str, case_id)).encode())) % (2**31 - 1)


def _expand(suite: Suite, device: str) -> list[tuple[Case, list[Group]]]:
    seen: dict[tuple, list[Group]] = {}
    out: list[tuple[Case, list[Group]]] = []
    for group in suite.groups:
        spec = _ops.get_op(group.op)
        for dtype in group.dtype:
            for model_name in group.models:
                model = presets.get_model(model_name)
                for batch in sorted(group.batch):
                    if group.tokens:
                        points = [(t, round(presets.seconds_for_tokens(t, model.family), 4)) for t in group.tokens]
                    else:
                        points = [(model.tokens(s), s) for s in group.seconds]
                    for tokens, secs in sorted(points):
                        shape = spec.shape_for(model, batch, tokens)
                        check_t = None
                        if suite.run.check_max_tokens and tokens > suite.run.check_max_tokens:
                            check_t = suite.run.check_max_tokens
                        case = Case(
                            op=group.op,
                            model=model.name,
                            family=model.family,
                            batch=batch,
                            tokens=tokens,
                            seconds=secs,
                            dtype=dtype,
                            device=device,
                            variant=group.variant,
                            shape_json=json.dumps(shape, sort_keys=True),
                            check_tokens=check_t,
                        )
                        if case.case_id in seen:  # named again by a later group: its impls join
                            seen[case.case_id].append(group)
                            continue
                        seen[case.case_id] = [group]
                        out.append((replace(case, seed=case_seed(suite.run.seed, case.case_id)), seen[case.case_id]))
    return out


def expand_cases(suite: Suite, device: str) -> list[Case]:
    """Every case of the suite, once, in run order."""
    return [case for case, _ in _expand(suite, device)]


def impls_for(group_impls: tuple[str, ...], exclude: tuple[str, ...], case: Case) -> list[tuple[str, str | None]]:
    """``[(impl name, reason it cannot run or None)]`` for a case.

    ``"*"`` adds every registered implementation that is available on the case's device and
    supports its dtype and head size; a name given explicitly is always listed, with the reason
    when it cannot run (not registered, backend missing, dtype unsupported).
    """
    import torch

    dtype = getattr(torch, case.dtype)
    head_size = _ops.get_op(case.op).head_size(case.shape)
    chosen: dict[str, str | None] = {}
    for entry in group_impls:
        if entry == "*":
            for rec in registry.list_impls(case.op):
                ok, _ = rec.available(case.device)
                ok = ok and rec.supports(dtype, head_size)[0]
                if ok:
                    chosen.setdefault(rec.name, None)
            continue
        try:
            rec = registry.get_impl(case.op, entry)
        except ValueError:
            chosen.setdefault(entry, f"not registered for {case.op}")
            continue
        ok, why = rec.available(case.device)
        if ok:
            ok, why = rec.supports(dtype, head_size)
        chosen.setdefault(entry, None if ok else why)
    return [(name, why) for name, why in chosen.items() if name not in exclude]


def plan(suite: Suite, device: str) -> list[tuple[Case, list[tuple[str, str | None]]]]:
    """Cases with their implementations (and skip reasons), in run order."""
    out = []
    for case, groups in _expand(suite, device):
        merged: dict[str, str | None] = {}
        for g in groups:  # a case named by several groups runs the union of their impls
            for name, why in impls_for(g.impls, g.exclude, case):
                merged.setdefault(name, why)
        out.append((case, list(merged.items())))
    return out
