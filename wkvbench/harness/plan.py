"""From a suite to the cells to run: cases in run order, each with its implementations.

:func:`expand_cases` turns a :class:`~wkvbench.harness.suite.Suite` into
:class:`~wkvbench.harness.suite.Case` records, ordered so that each implementation meets growing
sizes (dtype, model, batch, then tokens ascending): the skip predictions of
:mod:`wkvbench.harness.predict` ("out of memory at a smaller size", "too slow at a shorter T")
rely on that order; each timing mode of a group is its own case. :func:`plan` adds each case's
implementations (``"*"`` expanded against the registry) with the reason a listed one cannot run
here (:meth:`~wkvbench.registry.Impl.can_run`: backend, dtype, head size, backward in the training
modes), and skips every cell of a mode its op record does not list (``OpSpec.modes``). The worker
trusts the plan: it runs what is planned without deciding again.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import replace

from wkvbench import ops as _ops
from wkvbench import presets, registry, schema
from wkvbench.harness.suite import Case, Group, Suite, SuiteError
from wkvbench.impls import _gpu


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
                model = presets.get_preset(model_name)
                for batch in sorted(group.batch):
                    if group.tokens:
                        points = [(t, round(model.family_record.seconds_for_tokens(t), 4)) for t in group.tokens]
                    else:
                        points = [(model.tokens(s), s) for s in group.seconds]
                    axes = (
                        (p, m, c, k)
                        for p in sorted(points)
                        for m in group.modes
                        for c in group.precision
                        for k in group.checkpoint
                    )
                    for (tokens, secs), mode, precision, checkpoint in axes:
                        shape = spec.shape_for(model, batch, tokens)
                        check_t = None
                        limit = suite.run.check_max_tokens if group.check_max_tokens is None else group.check_max_tokens
                        if limit and tokens > limit:
                            check_t = limit
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
                            mode=mode,
                            shape_json=json.dumps(shape, sort_keys=True),
                            check_tokens=check_t,
                            impl_op=_ops.impl_op(group.op, model),  # the network op: its model's mixer op
                            head_size=spec.head_size(shape),
                            precision=precision,
                            checkpoint=checkpoint,
                            optimizer=suite.run.optimizer,
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


def impls_for(
    group_impls: tuple[str, ...], exclude: tuple[str, ...], case: Case, mixed: bool = False
) -> list[tuple[str, str | None]]:
    """``[(impl name, reason it cannot run or None)]`` for a case.

    ``"*"`` adds every registered implementation that is available on the case's device and
    supports its dtype and head size; a name given explicitly is always listed, with the reason
    when it cannot run (not registered, backend missing, dtype unsupported). ``mixed``: the group's
    models take implementations from several ops (a network group of several families); a name
    another of them registers is then left out of this case instead of listed as not registered.
    """
    op = case.impl_op
    others = {r.name for o in _ops.impl_ops(case.op) if o != op for r in registry.list_impls(o)} if mixed else set()
    chosen: dict[str, str | None] = {}
    for entry in group_impls:
        if entry == "*":
            for rec in registry.list_impls(op):
                ok, why = rec.can_run(case)
                if ok or why == registry.no_backward(rec.name):  # listed: skipped in training modes
                    chosen.setdefault(rec.name, None if ok else why)
            continue
        try:
            rec = registry.get_impl(op, entry)
        except ValueError:
            if entry not in others:  # another model's mixer (a network group of several families): not this case's
                elsewhere = sorted({r.op for r in registry.list_impls() if r.name == entry})
                hint = f" (it implements {', '.join(elsewhere)})" if elsewhere else ""
                chosen.setdefault(entry, f"not registered for {op}{hint}")
            continue
        ok, why = rec.can_run(case)
        chosen.setdefault(entry, None if ok else why)
    return [(name, why) for name, why in chosen.items() if name not in exclude]


def plan(suite: Suite, device: str) -> list[tuple[Case, list[tuple[str, str | None]]]]:
    """Cases with their implementations (and skip reasons), in run order."""
    out = []
    expanded = _expand(suite, device)
    impl_ops: dict[Group, set[str]] = {}  # a group's models may take implementations from several ops
    for case, groups in expanded:
        for g in groups:
            impl_ops.setdefault(g, set()).add(case.impl_op)
    with _gpu.deferred_device_probes():  # the parent never creates a CUDA context; the worker probes
        for case, groups in expanded:
            merged: dict[str, str | None] = {}
            for g in groups:  # a case named by several groups runs the union of their impls
                for name, why in impls_for(g.impls, g.exclude, case, len(impl_ops[g]) > 1):
                    merged.setdefault(name, why)
            unsupported = _ops.get_op(case.op).unsupported_mode(case.mode)  # e.g. the network op's bwd
            if case.precision != "pure" and not unsupported:  # autocast: whole networks in half precision
                if _ops.get_op(case.op).prepare is None:
                    unsupported = "autocast applies to whole networks (op network) only"
                elif case.dtype == "float32":
                    unsupported = "autocast needs a half-precision dtype (bfloat16 or float16)"
            if case.checkpoint != "none" and not unsupported:  # recompute in the backward: network training only
                if _ops.get_op(case.op).prepare is None or case.mode not in schema.TRAINING_MODES:
                    unsupported = "activation checkpointing applies to whole networks (op network) in fwd_bwd only"
            out.append((case, [(name, why or unsupported) for name, why in merged.items()]))
    return out
