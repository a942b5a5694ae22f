"""Which sibling scope instances of a page fold into one stack: those with the same structure.

Sibling instances of one module, ``MLP[0]`` … ``MLP[99]`` (or the bare-index children ``0``, ``1``, … of a
``torch.nn.Sequential``), fold into one box "MLP ×100" when they are alike; so do numbered siblings (``s0`` …
``s9999``) when there are more than :data:`SERIES_OVER` of them, too many to show one by one. Alike means the
same graph recorded in the same order, tested exactly rather than estimated: each instance's *signature* lists
its nodes in topological order, each as (op, role, the scope it sits in relative to the instance — so the
inner scope names — and where each operand comes from: the position of that operand inside the instance, or
the k-th distinct value from outside it). Two instances fold when their signatures are equal, and only
consecutive ones (``f[0..4]``, then ``f[5]`` alone if it is wired differently): a stack never spans an
instance that differs, so the folded view keeps the order of the computation and has no cycles through a
stack.

The signature of an instance is built once over its nodes, bottom-up through the scope tree; nodes and
scope paths are interned as integers, so comparing two instances is comparing two tuples of integers
(no hash that could collide).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["SERIES_OVER", "stacks"]

_INDEXED = re.compile(r"^(.*)\[(\d+)\]$")
_NUMBERED = re.compile(r"^(.*\D)(\d+)$")
#: Numbered siblings (``s0``, ``s1``, … without brackets) are folded only in families larger than this.
SERIES_OVER = 30


def _families(pairs: Sequence[tuple[int, str]]) -> list[tuple[str, list[tuple[int, int]]]]:
    """Sibling instances of one name: per (parent, base) the ``(index, scope)`` of ``base[index]``, of
    bare ``index`` segments (base ``""``) and, in families over SERIES_OVER, of ``base<index>``; families of
    two or more, in index order."""
    fams: dict[tuple[int, str, str], list[tuple[int, int]]] = {}
    for k in range(1, len(pairs)):
        parent, seg = pairs[k]
        m = _INDEXED.match(seg)
        if m is not None:
            fams.setdefault((parent, m[1], "[]"), []).append((int(m[2]), k))
        elif seg.isdigit():
            fams.setdefault((parent, "", ""), []).append((int(seg), k))
        else:
            n = _NUMBERED.match(seg)
            if n is not None:
                fams.setdefault((parent, n[1], "#"), []).append((int(n[2]), k))
    return [(base, sorted(f)) for (_, base, kind), f in fams.items() if len(f) > (SERIES_OVER if kind == "#" else 1)]


def stacks(
    pairs: Sequence[tuple[int, str]],
    scope_of: Sequence[int],
    ops: Sequence[int],
    roles: Sequence[int],
    nargs: Sequence[int],
    src: Sequence[int],
) -> list[tuple[str, list[int]]]:
    """The stacks of a page: lists of two or more sibling scopes (indices into ``pairs``) that fold.

    Parameters
    ----------
    pairs : sequence of (int, str)
        The scope tree as ``(parent index, segment)``, parents before children; index 0 is the root.
    scope_of : sequence of int
        Each node's scope index, nodes in topological order.
    ops, roles : sequence of int
        Each node's op and role as codes (equal codes: equal ops).
    nargs, src : sequence of int
        The edges grouped by result: node ``i`` has ``nargs[i]`` operands, listed in order in ``src``
        (node indices) after those of the nodes before it.

    Returns
    -------
    list of (str, list of int)
        Each stack's base name (``MLP`` for ``MLP[3]``, ``""`` for bare indices) and member scopes in
        index order; only the outermost stacks (none inside a member of another).

    Examples
    --------
    Three calls ``f[0..2]`` of ``x * 2`` and one ``f[3]`` of ``x + 2``: the first three fold.

    >>> pairs = [(-1, ""), (0, "f[0]"), (0, "f[1]"), (0, "f[2]"), (0, "f[3]")]
    >>> scope_of = [0, 0, 1, 2, 3, 4]          # x, the constant 2, then one op per call
    >>> ops, roles = [0, 0, 1, 1, 1, 2], [0, 1, 2, 2, 2, 2]
    >>> nargs = [0, 0, 2, 2, 2, 2]
    >>> src = [0, 1, 0, 1, 0, 1, 0, 1]
    >>> stacks(pairs, scope_of, ops, roles, nargs, src)
    [('f', [1, 2, 3])]
    """
    families = _families(pairs)
    if not families:
        return []
    candidate = {k for _, fam in families for _, k in fam}
    n_scopes = len(pairs)
    # each scope's candidate ancestors, itself included, outermost first
    ancestors: list[tuple[int, ...]] = [()] * n_scopes
    for k in range(1, n_scopes):
        up = ancestors[pairs[k][0]]
        ancestors[k] = (*up, k) if k in candidate else up
    members: dict[int, list[int]] = {k: [] for k in candidate}
    for i, s in enumerate(scope_of):
        for c in ancestors[s]:
            members[c].append(i)
    starts = [0] * (len(nargs) + 1)
    for i, n in enumerate(nargs):
        starts[i + 1] = starts[i] + n
    interned: dict[object, int] = {}

    def intern(key: object) -> int:
        v = interned.get(key)
        if v is None:
            v = interned[key] = len(interned)
        return v

    def signature(c: int) -> int:
        rel: dict[int, int] = {c: intern(("root",))}

        def rel_of(s: int) -> int:  # the scope's path below c, as an interned int (no recursion)
            chain = []
            while s not in rel:
                chain.append(s)
                s = pairs[s][0]
            v = rel[s]
            for t in reversed(chain):
                v = rel[t] = intern((v, pairs[t][1]))
            return v

        local: dict[int, int] = {}
        outside: dict[int, int] = {}
        rows = []
        for pos, i in enumerate(members[c]):
            local[i] = pos
            refs = []
            for e in range(starts[i], starts[i + 1]):
                u = src[e]
                p = local.get(u)
                if p is None:
                    p = -1 - outside.setdefault(u, len(outside))
                refs.append(p)
            rows.append((ops[i], roles[i], rel_of(scope_of[i]), tuple(refs)))
        return intern(tuple(rows))

    found: list[tuple[str, list[int]]] = []
    for base, fam in families:
        run: list[int] = []
        prev_index, prev_sig = -2, -1
        for index, k in fam:
            sig = signature(k)
            if sig == prev_sig and index == prev_index + 1:
                run.append(k)
            else:
                if len(run) > 1:
                    found.append((base, run))
                run = [k]
            prev_index, prev_sig = index, sig
        if len(run) > 1:
            found.append((base, run))
    in_stack = {k for _, run in found for k in run}

    def nested(k: int) -> bool:
        return any(a in in_stack for a in ancestors[pairs[k][0]])

    return sorted(((b, run) for b, run in found if not nested(run[0])), key=lambda s: s[1][0])
