"""Row loops: one loop over the samples of a tile computing a region of small per-sample values.

A run of elementwise ops, sums, maxima, broadcasts and tiny contractions over per-sample
values of a few vectors each (the output layer and softmax of an MLP, a 4-wide input) is
cheaper as one pass over the samples than as one pass per op: a value lives in registers,
as whole vectors (``lanes`` elements, the last one partly used) or, for one element, as a
scalar; sums and maxima within a sample are lane reductions; ``dot(A, v)`` with A shared is
unrolled as multiply-adds of the columns of op(A) (a padded copy in the hoist buffer,
``plan.panels``) by the elements of v, instead of a GEMM of width 10 that runs far below
peak. The loop also accumulates, in registers, the sums over the samples that the plan
assigned to it (``plan.row_terms``): an output's sum of a value of the loop ("rsum", in
double) and a small outer product of two per-sample columns ("rgemm", in ``T``, added to
the GEMM accumulator of that output) — the bias gradients and the output layer's weight
gradient. Lanes past a value's size hold garbage that is never reduced, stored or summed.
"""

from __future__ import annotations

from llvmlite import ir

from .lower import FASTMATH

I1, I32, I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
F64 = ir.DoubleType()


class _RowLoop:
    """Emits one row loop with the builder of ``em`` (a ``lower_array._Emitter``)."""

    def __init__(self, em, index, instrs, rows, stored):
        self.em, self.P, self.b = em, em.plan, em.b
        self.L = em.lanes
        self.instrs, self.rows, self.stored = instrs, rows, stored
        self.terms = self.P.row_terms.get(index, []) if getattr(em, "accumulate", False) else []
        self.mine = {i.target for i in instrs}

    # -- values: ("s", scalar) or ("v", [vectors]) ------------------------------------------
    def nvec(self, size):
        return -(-size // self.L)

    def load(self, name, r):
        """``name`` of sample ``r`` (``None``: a shared value) from memory."""
        em, b, L = self.em, self.b, self.L
        kind, ptr, size = em.loc[name]
        if kind == "row":
            ptr = em.at(ptr, b.mul(r, ir.Constant(I64, size)))
        if size == 1:
            v = b.load(ptr, typ=em.T)
        else:
            v = [em.load_vector(em.at(ptr, q * L), size - q * L if kind == "row" else L)
                 for q in range(self.nvec(size))]
        if self.P.is_bool(name):
            zero = lambda x: ir.Constant(x.type, None)
            return ("s", b.fcmp_ordered("!=", v, zero(v))) if size == 1 else \
                ("v", [b.fcmp_ordered("!=", x, zero(x)) for x in v])
        return ("s", v) if size == 1 else ("v", v)

    def value(self, a, r):
        if isinstance(a, bool):
            return ("b", a)
        if not isinstance(a, str):
            return ("c", float(a))
        if a not in self.env:
            self.env[a] = self.shared[a] if a in self.shared else self.load(a, r)
        return self.env[a]

    def as_vector(self, x):
        """A vector of ``x`` (a scalar splatted, a constant)."""
        em = self.em
        kind, v = x
        if kind == "c":
            return em.const(v, True)
        if kind == "b":
            c = ir.Constant(I1, int(v))
            return ir.Constant(ir.VectorType(I1, self.L), [c] * self.L)
        return em.splat(self.b, v)

    def as_scalar(self, x):
        kind, v = x
        if kind == "c":
            return self.em.const(v, False)
        if kind == "b":
            return ir.Constant(I1, int(v))
        return v

    def element(self, name, j, r):
        """Element ``j`` of ``name`` for sample ``r``, a scalar, loaded from memory: a
        broadcast load costs one load, an extraction from a register two shuffles."""
        em, b = self.em, self.b
        if name in self.env or name in self.shared or self.P.is_bool(name):
            kind, v = self.value(name, r)
            if kind != "v":
                return self.real(v)
            if name not in self.spilled:
                buf = em.slot(ir.ArrayType(em.T, len(v) * self.L))
                for q, x in enumerate(v):
                    b.store(self.real(x), em.at(buf, q * self.L), align=4 if em.single else 8)
                self.spilled[name] = buf
            return b.load(em.at(self.spilled[name], j), typ=em.T)
        kind, ptr, size = em.loc[name]
        base = em.at(ptr, b.mul(r, ir.Constant(I64, size))) if kind == "row" else ptr
        return b.load(em.at(base, j), typ=em.T)

    def real(self, v):
        """A boolean (``i1``) value as 0.0 / 1.0."""
        vector = isinstance(v.type, ir.VectorType)
        if (v.type.element if vector else v.type) == I1:
            return self.b.uitofp(v, self.em.VT if vector else self.em.T)
        return v

    def vectors(self, name, r):
        kind, v = self.value(name, r)
        return [self.real(self.as_vector((kind, v)))] if kind != "v" else [self.real(x) for x in v]

    # -- the ops ---------------------------------------------------------------------------
    def elementwise(self, ins, r):
        em, b = self.em, self.b
        if ins.op == "powi":
            vals = [self.value(ins.args[0], r)]
        else:
            vals = [self.value(a, r) for a in ins.args]
        extra = [int(ins.args[1])] if ins.op == "powi" else []
        if all(k != "v" for k, _ in vals):
            return ("s", em.apply(b, ins.op, [self.as_scalar(x) for x in vals] + extra, False))
        whole = [None if k == "v" else self.as_vector((k, v)) for k, v in vals]
        out = []
        for q in range(self.nvec(self.P.size(ins.target))):
            args = [v[q] if k == "v" else w for (k, v), w in zip(vals, whole)]
            out.append(em.apply(b, ins.op, args + extra, True))
        return ("v", out)

    def reduction(self, ins, r):
        em, b = self.em, self.b
        a = ins.args[0]
        kind, v = self.value(a, r)
        if kind != "v":
            return ("s", v)
        size = self.P.size(a)
        vecs = list(v)
        valid = size - (len(vecs) - 1) * self.L
        if valid < self.L:
            neutral = em.const(0.0 if ins.op == "sum" else float("-inf"), True)
            vecs[-1] = b.select(em.lane_mask(valid), vecs[-1], neutral)
        acc = vecs[0]
        for x in vecs[1:]:
            acc = em.combine(acc, x, ins.op)
        return ("s", em.reduce_lanes(acc, ins.op))

    def broadcast(self, ins, r):
        x = self.value(ins.args[0], r)
        size = self.P.size(ins.target)
        if size == 1:
            return ("s", self.as_scalar(x))
        return ("v", [self.as_vector(x)] * self.nvec(size))

    def dot(self, ins, r):
        """op(A) @ v: columns of op(A) times elements of v, in up to 4 independent chains."""
        em, b, L, P = self.em, self.b, self.L, self.P
        a, ta, k, m = P.tiny_dot(ins)
        v = ins.args[1]
        if m == 1:  # a row of A (contiguous either way) times v: lane products, one reduction
            kind, ptr, _ = em.loc[a]
            vs = self.vectors(v, r)
            prods = [b.fmul(x, em.load_vector(em.at(ptr, q * L), L), flags=FASTMATH)
                     for q, x in enumerate(vs)]
            valid = k - (len(prods) - 1) * L
            if valid < L:
                prods[-1] = b.select(em.lane_mask(valid), prods[-1], em.const(0.0, True))
            acc = prods[0]
            for x in prods[1:]:
                acc = b.fadd(acc, x, flags=FASTMATH)
            return ("s", em.reduce_lanes(acc, "sum"))
        panel, _, _, mp = em.panel[(a, ta)]
        nq = mp // L
        chains = max(1, min(4, 4 // nq, k))
        acc = [[None] * nq for _ in range(chains)]
        for j in range(k):
            s = em.splat(b, self.element(v, j, r))
            c = acc[j % chains]
            for q in range(nq):
                w = em.load_vector(em.at(panel, j * mp + q * L), L)
                t = b.fmul(s, w, flags=FASTMATH)
                c[q] = t if c[q] is None else b.fadd(c[q], t, flags=FASTMATH)
        out = acc[0]
        for c in acc[1:]:
            out = [b.fadd(x, y, flags=FASTMATH) for x, y in zip(out, c)]
        return ("v", out)

    def store(self, name, x, r):
        em, b, L = self.em, self.b, self.L
        _, ptr, size = em.loc[name]
        base = em.at(ptr, b.mul(r, ir.Constant(I64, size)))
        if x[0] != "v":
            b.store(self.real(self.as_scalar(x)), base)
            return
        for q, v in enumerate(x[1]):
            em.store_vector(self.real(v), em.at(base, q * L), size - q * L)

    # -- the loop ----------------------------------------------------------------------------
    def accumulators(self):
        """(term, phi type, initial value) per accumulator of the hosted terms."""
        em, P = self.em, self.P
        out = []
        for t in self.terms:
            k, kind, name, sign = t
            if kind == "rsum":
                size = P.size(name)
                ty = F64 if size == 1 else ir.VectorType(F64, self.L)
                out += [(t, ty)] * (1 if size == 1 else self.nvec(size))
            else:
                x, y = P.defs[name].args[:2]
                out += [(t, em.VT)] * (P.size(x) * self.nvec(P.size(y)))
        return out

    def accumulate(self, r, accs):
        """The accumulators after adding sample ``r``'s terms (same order as ``accs``)."""
        b, P = self.b, self.P
        new, at = [], 0
        for t in self.terms:
            k, kind, name, sign = t
            if kind == "rsum":
                kind_, v = self.value(name, r)
                parts = [self.real(v)] if kind_ != "v" else [self.real(x) for x in v]
                for x in parts:
                    wide = b.fpext(x, accs[at].type) if self.em.single else x
                    new.append(b.fadd(accs[at], wide))
                    at += 1
            else:
                x, y = P.defs[name].args[:2]
                ys = self.vectors(y, r)
                for i in range(P.size(x)):
                    s = self.em.splat(b, self.element(x, i, r))
                    for yv in ys:
                        new.append(b.fadd(accs[at], b.fmul(s, yv, flags=FASTMATH), flags=FASTMATH))
                        at += 1
        return new

    def emit(self):
        em, b = self.em, self.b
        fn = em.fn
        self.shared = {}
        for ins in self.instrs:
            ops = [ins.args[1]] if ins.op == "dot" else ins.args[:1] if ins.op in ("sum", "amax", "broadcast") \
                else ins.args
            for a in ops:
                if isinstance(a, str) and a not in self.mine and a not in self.shared \
                        and em.loc[a][0] == "shared":
                    self.shared[a] = self.load(a, None)
        kinds = self.accumulators()
        pre = b.block
        head = fn.append_basic_block("rows_head")
        body = fn.append_basic_block("rows_body")
        done = fn.append_basic_block("rows_done")
        b.branch(head)
        b.position_at_end(head)
        r = b.phi(I64, "r")
        r.add_incoming(ir.Constant(I64, 0), pre)
        accs = []
        for _, ty in kinds:
            phi = b.phi(ty)
            phi.add_incoming(ir.Constant(ty, None), pre)
            accs.append(phi)
        b.cbranch(b.icmp_signed("<", r, self.rows), body, done)
        b.position_at_end(body)
        em._splats = {}
        self.env, self.spilled = {}, {}
        for ins in self.instrs:
            if ins.op == "dot":
                x = self.dot(ins, r)
            elif ins.op in ("sum", "amax"):
                x = self.reduction(ins, r)
            elif ins.op == "broadcast":
                x = self.broadcast(ins, r)
            else:
                x = self.elementwise(ins, r)
            self.env[ins.target] = x
            if ins.target in self.stored:
                self.store(ins.target, x, r)
        new = self.accumulate(r, accs)
        r.add_incoming(b.add(r, ir.Constant(I64, 1)), b.block)
        for phi, v in zip(accs, new):
            phi.add_incoming(v, b.block)
        b.branch(head)
        b.position_at_end(done)
        em._splats = {}
        self.flush(accs)

    def flush(self, accs):
        """Add the accumulators to the sums (double) and the GEMM accumulators (``T``)."""
        em, b, P, L = self.em, self.b, self.P, self.L
        at = 0
        for t in self.terms:
            k, kind, name, sign = t
            base = P.out_offsets[k]
            if kind == "rsum":
                size = P.size(name)
                for q in range(1 if size == 1 else self.nvec(size)):
                    acc = accs[at]
                    at += 1
                    if size == 1:
                        ptr = em.at(em.sums, base, F64)
                        old = b.load(ptr, typ=F64)
                        b.store(b.fadd(old, acc) if sign > 0 else b.fsub(old, acc), ptr)
                        continue
                    ptr = em.at(em.sums, base + q * L, F64)
                    valid = size - q * L
                    old = em.load_vector(ptr, valid, acc.type)
                    em.store_vector(b.fadd(old, acc) if sign > 0 else b.fsub(old, acc), ptr, valid)
            else:
                x, y = P.defs[name].args[:2]
                p, q_ = P.size(x), P.size(y)
                buf = em.at(em.scratch, P.acc[k])
                fresh = em.fresh if k not in em.acc_started else None
                for i in range(p):
                    for q in range(self.nvec(q_)):
                        acc = accs[at]
                        at += 1
                        ptr = em.at(buf, i * q_ + q * L)
                        valid = q_ - q * L
                        old = em.load_vector(ptr, valid)
                        if fresh is not None:
                            old = b.select(fresh, em.const(0.0, True), old)
                        em.store_vector(b.fadd(old, acc, flags=FASTMATH) if sign > 0 else
                                        b.fsub(old, acc, flags=FASTMATH), ptr, valid)
                em.acc_started.add(k)
