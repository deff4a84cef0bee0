"""The command line's side of a suite: the run-setting flags, the suite ``wkvbench run`` asks for
(a file edited by flags, an ad-hoc sweep, or the one stored for ``--resume``), and the checks of
its implementation names."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import fields, replace
from pathlib import Path

from wkvbench import ops, registry
from wkvbench.harness import rundir
from wkvbench.harness.suite import (
    DEVICES,
    FLAG_OF,
    Group,
    RunSettings,
    Suite,
    SuiteError,
    _split,
    check_modes,
    edit_suite,
    load_suite,
    plugin_path,
    suite_from_flags,
)

#: Default of ``--max-cells``: a plan larger than this is refused before any planning work.
MAX_CELLS = 100_000


def estimate_cells(suite: Suite) -> int:
    """An upper bound on the cells ``suite`` plans, from its axes alone (no planning work)."""
    total = 0
    for g in suite.groups:
        n_impls = len(set(g.impls) - {"*"})
        if "*" in g.impls:
            n_impls += max((len(registry.list_impls(op)) for op in impl_ops_of(g)), default=0)
        per_model = (
            len(g.batch)
            * max(len(g.tokens) + len(g.seconds), 1)
            * len(g.dtype)
            * len(g.modes)
            * len(g.precision)
            * len(g.checkpoint)
        )
        total += len(g.models) * per_model * max(n_impls, 1)
    return total


def impl_ops_of(g: Group) -> list[str]:
    """The ops whose implementations a group names (a network group: its models' mixer ops)."""
    try:
        return list(dict.fromkeys(ops.impl_op(g.op, m) for m in g.models))
    except ValueError:
        return [g.op]


def check_suite_impls(suite: Suite) -> None:
    """Every implementation a suite file names must be registered for its group's op, unless the
    suite loads plugins (a plugin's name that failed to register is then ``skipped``): a typo in
    a suite file is a SuiteError naming the file and the key, as it is on the command line."""
    if suite.plugins:
        return
    for i, g in enumerate(suite.groups):
        known = {r.name for op in impl_ops_of(g) for r in registry.list_impls(op)}
        for n in g.impls:
            if n != "*" and n not in known:
                raise SuiteError(
                    f"{suite.source or 'suite'}: group[{i}].impls: unknown implementation {n!r} for {g.op}; "
                    f"known: {', '.join(sorted(known))} (give --plugin to load one)"
                )


def check_plan_size(suite: Suite, max_cells: int | None) -> None:
    """A SuiteError naming ``--max-cells`` when the suite would plan more than ``max_cells`` cells."""
    limit = MAX_CELLS if max_cells is None else max_cells
    if limit < 1:
        raise SuiteError(f"command line: --max-cells: expected a positive number, got {limit}")
    n = estimate_cells(suite)
    if n > limit:
        raise SuiteError(
            f"command line: --max-cells: the suite plans up to {n:,} cells, over the limit of {limit:,}; "
            "narrow it or raise --max-cells"
        )


def add_run_flags(group) -> None:
    """One ``--flag`` per :class:`RunSettings` field (``budget_s`` -> ``--budget-s``), default None."""
    for f in fields(RunSettings):
        kind, flag = f.metadata["kind"], "--" + f.name.replace("_", "-")
        helptext = f"{f.metadata['help']} (overrides run.{f.name})"
        if kind == "str":
            group.add_argument(flag, choices=f.metadata["choices"] or DEVICES, help=helptext)
        elif f.metadata["switch"]:  # --profile alone is --profile 1
            group.add_argument(flag, type=int, nargs="?", const=1, choices=(0, 1), help=helptext)
        else:
            group.add_argument(flag, type=int if kind.endswith("int") else float, help=helptext)


def run_overrides(args: argparse.Namespace) -> dict:
    """The run settings given as flags (None where not given)."""
    return {f.name: getattr(args, f.name, None) for f in fields(RunSettings)}


#: Flags that define a sweep's axes: with a suite file, the file defines them.
AXIS_FLAGS = ("model", "batch", "tokens", "seconds", "dtype", "variant")


def _stored_suite(out) -> tuple[Suite, Path]:
    env_path = Path(out) / rundir.ENV_FILE
    if not env_path.is_file():
        raise SuiteError(f"{env_path}: no env.json to resume from; give the suite file or flags")
    try:
        stored = rundir.read_env(out).get("suite")
    except rundir.RunDirError as exc:
        raise SuiteError(str(exc)) from None
    if not stored:
        raise SuiteError(f"{env_path}: holds no suite; give the suite file or flags")
    try:
        return Suite.from_dict(stored), env_path
    except (KeyError, TypeError, ValueError) as exc:
        raise SuiteError(f"{env_path}: its suite cannot be read ({type(exc).__name__}: {exc})") from None


def check_resume(suite: Suite, stored: Suite, where) -> None:
    """``--resume`` continues the sweep the run directory planned: a suite (file or flags) whose
    groups differ from the stored one is a SuiteError naming the flag that changes it."""
    if len(suite.groups) != len(stored.groups):
        raise SuiteError(
            f"command line: --op: --resume continues the {len(stored.groups)} group(s) planned in {where}, "
            f"these flags give {len(suite.groups)}; drop the flags that change the plan or use a new --out"
        )
    for new, old in zip(suite.groups, stored.groups, strict=True):
        for f in fields(Group):
            a, b = getattr(new, f.name), getattr(old, f.name)
            if a != b:
                flag = FLAG_OF.get(f.name, f.name)
                raise SuiteError(
                    f"command line: {flag}: --resume continues the sweep planned in {where} "
                    f"({f.name} {_show(b)}), {flag} changes it to {_show(a)}; drop {flag} or use a new --out"
                )


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def suite_from_args(args: argparse.Namespace) -> Suite:
    """The suite ``wkvbench run`` runs: a suite file edited by flags, an ad-hoc sweep from flags,
    or (``--resume --out``) the suite stored in the run directory. Its ``plugins`` are the suite's
    (resolved against the suite file) followed by ``--plugin``'s (against the working directory).
    With ``--resume``, flags or a suite that change the stored plan are refused (:func:`check_resume`)."""
    run = run_overrides(args)
    mode = getattr(args, "mode", None)
    precision = getattr(args, "precision", None)
    checkpoint = getattr(args, "checkpoint", None)
    edits = dict(
        impls=args.impl, exclude=args.exclude, modes=mode, run=run, precision=precision, checkpoint=checkpoint
    )  # flags that edit a suite
    stored = where = None
    if args.resume and args.out and (Path(args.out) / rundir.ENV_FILE).is_file():
        stored, where = _stored_suite(args.out)
    if args.suite:
        used = [f"--{k}" for k in AXIS_FLAGS if getattr(args, k, None)]
        if used:
            raise SuiteError(
                f"command line: {', '.join(used)}: not allowed with a suite file (edit the suite or "
                "use flags alone); --op, --impl, --exclude, --device and run settings are"
            )
        suite = edit_suite(load_suite(args.suite), ops=args.op, **edits)
    elif args.op:
        axes = {k: getattr(args, k, None) for k in AXIS_FLAGS}
        models = axes.pop("model")
        if mode:
            check_modes(mode)
        suite = suite_from_flags(
            args.op, impls=args.impl, exclude=args.exclude, models=models, mode=mode, run=run,
            precision=precision, checkpoint=checkpoint, **axes,
        )  # fmt: skip
    elif args.resume and args.out:
        if stored is None:
            stored, where = _stored_suite(args.out)
        used = [f"--{k}" for k in AXIS_FLAGS if getattr(args, k, None)]
        if used:
            raise SuiteError(
                f"command line: {used[0]}: --resume continues the sweep planned in {where}; "
                f"{', '.join(used)} would change it; drop them or use a new --out"
            )
        if mode:
            check_modes(mode)
        suite = edit_suite(stored, **edits)
    else:
        raise SuiteError("command line: give a suite file, or --op (ad-hoc sweep), or --resume --out RUN_DIR")
    if stored is not None:
        check_resume(suite, stored, where)
    plugins = [*suite.plugins, *(plugin_path(p) for p in getattr(args, "plugin", None) or ())]
    return replace(suite, plugins=tuple(dict.fromkeys(plugins)))


def check_impl_names(flag: str, text: str | None, ops: Iterable[str]) -> None:
    """Every implementation named by ``flag`` (``--impl``, ``--exclude``) must be registered for one
    of ``ops`` (plugins loaded first): a typo on the command line fails at once, naming the known ones.
    Names in a suite file are not checked here: there, one that is not loaded is ``skipped``."""
    if not text:
        return
    ops = list(dict.fromkeys(ops))
    known = list(dict.fromkeys(r.name for op in ops for r in registry.list_impls(op)))
    unknown = [n for n in _split(flag, text, str) if n != "*" and n not in known]
    if unknown:
        elsewhere = {n: sorted({r.op for r in registry.list_impls() if r.name == n}) for n in unknown}
        hint = "".join(f"; {n!r} implements {', '.join(o)}" for n, o in elsewhere.items() if o)
        raise SuiteError(
            f"command line: {flag}: unknown implementation(s) {', '.join(map(repr, unknown))} for "
            f"{', '.join(ops)}{hint}; known: {', '.join(known)}"
        )
