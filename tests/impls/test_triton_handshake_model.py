"""Model check of the chunked Triton forward's two-program ticket handshake (bi_wkv7_triton/fwd.py, the
gated merge at the end of ``_bi_wkv7_chunked_kernel``).

Per ``[L, BV]`` tile the forward and the reverse program each take a ticket from a zeroed counter
(``atomic_add(+1)``): the first (ticket 0) stores its gated partial to the workspace, then releases
(``atomic_add(+2)``); the second (ticket 1 or 3) spins (``atomic_add(+0)``) until the counter is at
least 3, then loads the partner's partial. The interpreter runs one program at a time, so on the
CPU the second always sees ticket 3: the wait loop and the orderings never matter there. This model
explores every interleaving of the two programs, with the reorderings each memory ordering permits:

* a plain store goes to its program's store buffer and reaches memory at any later step, the
  buffered stores in any order; an atomic with release (``release``, ``acq_rel``) waits until the
  buffer is empty; a relaxed or acquire-only atomic does not (its update may become visible first);
* a plain load may be performed early, at any step before the program reaches it (hoisted above
  the atomics before it), but an atomic with acquire (``acquire``, ``acq_rel``) discards any load
  performed before it: the loads after an acquire read memory no earlier than the acquire;
* atomics act on memory at once (one counter: its updates are totally ordered).

A program is one thread here: the kernel's ``tl.debug_barrier`` before the release is what orders
every thread's partial store before the releasing atomic. The property: the second program never
uses a workspace element that the first has not written. The orderings are read from the kernel
source; mutants with a relaxed release, a relaxed or release-only ticket, or a relaxed spin load
must be caught (a counterexample trace), and the kernel's own orderings must pass while the
exploration reaches both roles, ticket 1 with the wait loop, and ticket 3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

KERNEL = Path(__file__).parents[2] / "wkvbench" / "impls" / "bi_wkv7_triton" / "fwd.py"
ACQUIRE = {"acquire", "acq_rel", "seq_cst"}
RELEASE = {"release", "acq_rel", "seq_cst"}
CELLS = 2  # workspace elements of the tile (stored, and loaded, separately)
DONE = 99


@dataclass(frozen=True)
class Orderings:
    ticket: str  # atomic_add(+1)
    release: str  # atomic_add(+2) of the first program
    spin: str  # atomic_add(+0) of the second program's wait loop


@dataclass(frozen=True)
class Program:
    pc: int = 0  # 0 ticket; 1..CELLS store cell pc-1; CELLS+1 release; 10 wait loop; 11 load; DONE
    flag: int = -1
    pending: frozenset = frozenset()  # buffered stores (cells)
    early: tuple = (None,) * CELLS  # values of loads performed early (None: not yet)


@dataclass(frozen=True)
class State:
    counter: int = 0
    ws: tuple = (0,) * CELLS  # 0: not written, 1: the first program's partial
    progs: tuple = (Program(), Program())


def kernel_orderings(text: str | None = None) -> Orderings:
    """The orderings of the three counter atomics of the kernel source (checking the handshake's shape)."""
    text = KERNEL.read_text() if text is None else text
    sems = {}
    for key, call in (("ticket", "ticket = tl.atomic_add(cp, 1"), ("release", "tl.atomic_add(cp, 2"),
                      ("spin", "flag = tl.atomic_add(cp, 0")):  # fmt: skip
        found = re.findall(re.escape(call) + r', sem="(\w+)"', text)
        assert len(found) == 1, f"the handshake's {call!r} changed: update this model"
        sems[key] = found[0]
    for piece in ("if ticket == 0:", "tl.debug_barrier()", "while flag < 3:", "other = tl.load(ws + off"):
        assert piece in text, f"the handshake changed ({piece!r} is gone): update this model"
    return Orderings(**sems)


def _set(progs: tuple, i: int, p: Program) -> tuple:
    return tuple(p if j == i else q for j, q in enumerate(progs))


def _rmw(s: State, i: int, add: int, sem: str) -> tuple[State, int] | None:
    """Atomic add on the counter by program i; None where a release must wait for the store buffer."""
    p = s.progs[i]
    if sem in RELEASE and p.pending:
        return None
    if sem in ACQUIRE:
        p = replace(p, early=(None,) * CELLS)
    return replace(s, counter=s.counter + add, progs=_set(s.progs, i, p)), s.counter


def successors(s: State, o: Orderings):
    """(label, next state, violation or None) of every step the model allows from ``s``."""
    for i, p in enumerate(s.progs):
        for c in sorted(p.pending):  # a buffered store reaches memory
            ws = tuple(1 if j == c else v for j, v in enumerate(s.ws))
            yield (
                f"P{i} store ws[{c}] visible",
                replace(s, ws=ws, progs=_set(s.progs, i, replace(p, pending=p.pending - {c}))),
                None,
            )
        if p.pc < 11 and not (1 <= p.pc <= CELLS + 1):  # may still become the second: a load performed early
            for c in range(CELLS):
                if p.early[c] is None:
                    early = tuple(s.ws[c] if j == c else v for j, v in enumerate(p.early))
                    yield (
                        f"P{i} loads ws[{c}] early ({s.ws[c]})",
                        replace(s, progs=_set(s.progs, i, replace(p, early=early))),
                        None,
                    )
        if p.pc == 0:
            nxt = _rmw(s, i, 1, o.ticket)
            if nxt is not None:
                n, ticket = nxt
                q = n.progs[i]
                q = replace(q, pc=1) if ticket == 0 else replace(q, pc=10, flag=ticket)
                yield f"P{i} ticket {ticket}", replace(n, progs=_set(n.progs, i, q)), None
        elif 1 <= p.pc <= CELLS:
            q = replace(p, pc=p.pc + 1, pending=p.pending | {p.pc - 1})
            yield f"P{i} stores ws[{p.pc - 1}] (buffered)", replace(s, progs=_set(s.progs, i, q)), None
        elif p.pc == CELLS + 1:
            nxt = _rmw(s, i, 2, o.release)
            if nxt is not None:
                n, _ = nxt
                yield f"P{i} releases (+2)", replace(n, progs=_set(n.progs, i, replace(n.progs[i], pc=DONE))), None
        elif p.pc == 10:
            if p.flag >= 3:
                yield f"P{i} leaves the wait", replace(s, progs=_set(s.progs, i, replace(p, pc=11))), None
            else:
                nxt = _rmw(s, i, 0, o.spin)
                if nxt is not None:
                    n, flag = nxt
                    q = replace(n.progs[i], flag=flag)
                    yield f"P{i} spins, reads {flag}", replace(n, progs=_set(n.progs, i, q)), None
        elif p.pc == 11:
            got = tuple(e if e is not None else s.ws[c] for c, e in enumerate(p.early))
            bad = None if all(v == 1 for v in got) else f"P{i} used the partner's partial {got} before it was written"
            yield f"P{i} loads the partial {got}", replace(s, progs=_set(s.progs, i, replace(p, pc=DONE))), bad


@dataclass
class Result:
    states: int
    counterexample: list[str] | None
    seen: set  # labels of the steps taken somewhere
    stuck: list  # reachable states where nothing can move but not both done


def explore(o: Orderings) -> Result:
    """Every state reachable from the start; stops at the first violation, with its trace."""
    start = State()
    parent: dict[State, tuple[State, str] | None] = {start: None}
    stack, seen, stuck = [start], set(), []
    while stack:
        s = stack.pop()
        moved = False
        for label, n, bad in successors(s, o):
            moved = True
            seen.add(label)
            if bad is not None:
                trace, cur = [label, bad], s
                while parent[cur] is not None:
                    cur, step = parent[cur]
                    trace.insert(0, step)
                return Result(len(parent), trace, seen, stuck)
            if n not in parent:
                parent[n] = (s, label)
                stack.append(n)
        done = all(p.pc == DONE and not p.pending for p in s.progs)
        if not moved and not done:
            stuck.append(s)
        if done:
            assert s.counter == 4 and s.ws == (1,) * CELLS, s
    return Result(len(parent), None, seen, stuck)


def test_kernel_handshake_is_safe_in_every_interleaving():
    o = kernel_orderings()
    assert o == Orderings(ticket="acq_rel", release="release", spin="acquire"), o
    res = explore(o)
    assert res.counterexample is None, "\n".join(res.counterexample)
    assert not res.stuck, f"{len(res.stuck)} reachable states can never finish, e.g. {res.stuck[0]}"
    for i in (0, 1):  # both programs reach both roles; the wait loop runs; ticket 3 skips it
        assert {f"P{i} ticket 0", f"P{i} ticket 1", f"P{i} ticket 3"} <= res.seen
        assert {f"P{i} spins, reads 2", f"P{i} spins, reads 4"} <= res.seen  # waiting, then released
    assert res.states > 100


@pytest.mark.parametrize(
    "field,sem",
    [
        ("release", "relaxed"),  # the partial may become visible after the +2
        ("ticket", "relaxed"),  # ticket 3, but the loads were performed before it
        ("ticket", "release"),  # the same: no acquire on the ticket
        ("spin", "relaxed"),  # the loads hoisted above the spin that reads 3
    ],
)
def test_weakened_ordering_is_caught(field, sem):
    o = replace(kernel_orderings(), **{field: sem})
    res = explore(o)
    assert res.counterexample is not None, f"{o}: the model found no violation"
    assert "before it was written" in res.counterexample[-1]


def test_acquire_alone_suffices_for_the_ticket():
    """What the model says of the ticket's release half: nothing stored before it needs publishing."""
    assert explore(replace(kernel_orderings(), ticket="acquire")).counterexample is None


def test_orderings_are_read_from_the_kernel():
    text = KERNEL.read_text().replace('tl.atomic_add(cp, 2, sem="release"', 'tl.atomic_add(cp, 2, sem="relaxed"')
    assert kernel_orderings(text).release == "relaxed"
    with pytest.raises(AssertionError, match="update this model"):
        kernel_orderings(text.replace("while flag < 3:", "while flag < 2:"))
