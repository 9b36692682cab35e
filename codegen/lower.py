"""Lower a symdiff IR :class:`Program` to LLVM IR: one explicit SIMD loop over the batch.

We emit the vector loop ourselves instead of hoping LLVM's loop vectorizer fires:
every value in the loop body is a ``<lanes x T>`` vector, transcendental functions
call vector math (``codegen.vecmath``), and LLVM's O3 pipeline then schedules,
fuses multiply-adds and allocates registers. Values that do not depend on data
(parameters and everything computed from them alone) are computed once, as scalars,
before the loop.

Two function shapes share one loop skeleton:

* ``reduce`` — ``void f(double* theta, T** columns, i64 start, i64 end, double* sums,
  double scale)`` writes ``scale`` times the sum over samples ``start..end`` of every
  output into ``sums`` (the caller passes 1/n and gets means, no extra pass over them). Sums run
  in ``T`` within blocks of ``BLOCK_ITERATIONS`` vectors and in double across blocks,
  so float32 kernels keep float64-like accuracy on long batches.
* ``map`` — same arguments, but ``out`` is a table of ``T*`` columns, one per output
  (``scale`` unused): writes every output of every sample (a model's prediction, a
  residual, the rows of a Jacobian).

The last ``(end - start) % lanes`` samples run as one more vector iteration over a
small buffer padded by repeating the last sample (so padded lanes stay in the data's
domain); their padding is masked out when the block is flushed. Every sample thus
goes through the same vector code, whatever the batch size or thread split.

Fast-math flags are chosen, not blanket ``fast``: ``nsz arcp contract afn`` allow
FMA contraction and reciprocal tricks but keep NaN and infinity semantics intact,
so a diverging fit shows up as NaN instead of a silently wrong number.
"""

from __future__ import annotations

from llvmlite import ir

from . import vecmath

FASTMATH = ("nsz", "arcp", "contract", "afn")
BLOCK_ITERATIONS = 64
#: bodies longer than this are split into functions of about SEGMENT_INSTRUCTIONS each
SPLIT_ABOVE = 4000
SEGMENT_INSTRUCTIONS = 1500

I1, I32, I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()


def _abs_key(z):
    """A key equal for z and -z: fneg is looked through, x - y and y - x coincide."""
    op = getattr(z, "opname", None)
    if op == "fneg":
        return _abs_key(z.operands[0])
    if op == "fsub":
        return ("fsub", frozenset(id(o) for o in z.operands))
    return id(z)


def _varies(arg, varying) -> bool:
    return isinstance(arg, str) and arg in varying


def _alloca(b, ty, name):
    """An alloca typed as an opaque ``ptr`` (llvmlite would print a typed pointer)."""
    slot = b.alloca(ty, name=name)
    slot.type = PTR
    return slot


class LoweringError(NotImplementedError):
    """An IR operation with no LLVM lowering (names the op)."""


def lower_to_llvm(program, *, single: bool, lanes: int, isa: str, functions: dict) -> ir.Module:
    """An LLVM module with one function per entry of ``functions``.

    ``functions`` maps a function name to ``(mode, output_indices)`` with mode
    ``"reduce"`` or ``"map"``; each function computes only the outputs it needs.
    """
    module = ir.Module(name="symdiff")
    for name, (mode, outputs) in functions.items():
        selected = program.select(list(outputs))
        emitter = _SplitFunctionEmitter if len(selected.body) > SPLIT_ABOVE else _FunctionEmitter
        emitter(module, selected, name, mode, single=single, lanes=lanes, isa=isa).emit()
    return module



def emit_for(b, lo, hi, body, step=1, name="i"):
    """``for i in range(lo, hi, step): body(b, i)`` with run-time bounds (i64 values), the
    builder left after the loop; ``body`` may add blocks of its own."""
    fn = b.function
    head = fn.append_basic_block(name + "_head")
    inner = fn.append_basic_block(name + "_body")
    done = fn.append_basic_block(name + "_done")
    pre = b.block
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name)
    i.add_incoming(lo, pre)
    b.cbranch(b.icmp_signed("<", i, hi), inner, done)
    b.position_at_end(inner)
    body(b, i)
    i.add_incoming(b.add(i, ir.Constant(I64, step)), b.block)
    b.branch(head)
    b.position_at_end(done)

class _FunctionEmitter:
    def __init__(self, module, program, name, mode, *, single, lanes, isa):
        self.module, self.program, self.mode = module, program, mode
        self.single, self.lanes, self.isa = single, lanes, isa
        self.T = F32 if single else F64
        self.VT = ir.VectorType(self.T, lanes) if lanes > 1 else self.T
        self.DVT = ir.VectorType(F64, lanes) if lanes > 1 else F64
        fnty = ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, I64, PTR, F64])
        self.fn = ir.Function(module, fnty, name=name)
        self.fn.attributes.add("nounwind")
        for a in (0, 1, 4):
            self.fn.args[a].add_attribute("noalias")
        self.varying = program.varying()
        self._splats = {}
        self._consts = {}

    # -- types and constants --------------------------------------------------
    def vtype(self, kind, vector):
        base = I1 if kind == "bool" else self.T
        return ir.VectorType(base, self.lanes) if vector and self.lanes > 1 else base

    def const(self, value, vector):
        key = (float(value).hex(), vector)  # hex tells -0.0 from 0.0
        c = self._consts.get(key)
        if c is None:
            c = ir.Constant(self.T, float(value))
            if vector and self.lanes > 1:
                c = ir.Constant(self.VT, [c] * self.lanes)
            self._consts[key] = c
        return c

    def splat(self, b, value, key=None):
        if self.lanes == 1 or isinstance(value.type, ir.VectorType):
            return value
        if key is not None and key in self._splats:
            return self._splats[key]
        shapes = self._consts.get(("splat", str(value.type)))
        if shapes is None:
            vty = ir.VectorType(value.type, self.lanes)
            shapes = (ir.Constant(vty, ir.Undefined), ir.Constant(I32, 0),
                      ir.Constant(ir.VectorType(I32, self.lanes), [ir.Constant(I32, 0)] * self.lanes))
            self._consts[("splat", str(value.type))] = shapes
        undef, zero, mask = shapes
        one = b.insert_element(undef, value, zero)
        out = b.shuffle_vector(one, undef, mask)
        if key is not None:
            self._splats[key] = out
        return out

    def declare(self, name, ret, args):
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
            fn.attributes.add("nounwind")
        return fn

    def intrinsic(self, b, base, ty, args):
        suffix = (f"v{ty.count}{'f32' if ty.element == F32 else 'f64'}"
                  if isinstance(ty, ir.VectorType) else ("f32" if ty == F32 else "f64"))
        fn = self.declare(f"llvm.{base}.{suffix}", ty, [ty] * len(args))
        return b.call(fn, args, fastmath=FASTMATH)

    # -- math -----------------------------------------------------------------
    def libcall(self, b, op, args):
        ty = args[0].type
        vector = isinstance(ty, ir.VectorType)
        if vector:
            name = vecmath.vector_name(op, self.single, ty.count, self.isa)
            if name is not None:
                return b.call(self.declare(name, ty, [ty] * len(args)), args)
            result = ir.Constant(ty, ir.Undefined)
            for lane in range(ty.count):
                idx = ir.Constant(I32, lane)
                lane_val = self.libcall(b, op, [b.extract_element(a, idx) for a in args])
                result = b.insert_element(result, lane_val, idx)
            return result
        name = vecmath.scalar_name(op, self.single)
        return b.call(self.declare(name, ty, [ty] * len(args)), args)

    def apply(self, b, op, args, vector):
        fm = FASTMATH
        c = lambda v: self.const(v, vector)
        if op == "add":
            return b.fadd(args[0], args[1], flags=fm)
        if op == "sub":
            return b.fsub(args[0], args[1], flags=fm)
        if op == "mul":
            return b.fmul(args[0], args[1], flags=fm)
        if op == "div":
            return b.fdiv(args[0], args[1], flags=fm)
        if op == "neg":
            return b.fneg(args[0], flags=fm)
        if op == "powi":
            return self.powi(b, args[0], args[1])
        if op == "sqrt":
            return self.intrinsic(b, "sqrt", args[0].type, args)
        if op == "abs":
            return self.intrinsic(b, "fabs", args[0].type, args)
        if op in ("max", "min"):
            return self.intrinsic(b, "maximum" if op == "max" else "minimum", args[0].type, args)
        if op in vecmath.LIBM:
            return self.libcall(b, op, args)
        if op == "sigmoid":
            # 1/(1 + e) for z >= 0, e/(1 + e) below, with e = exp(-|z|) <= 1: never overflows,
            # and shares its exp with a softplus of the same z
            z = args[0]
            e = self.exp_neg_abs(b, z)
            r = b.fdiv(c(1.0), b.fadd(c(1.0), e, flags=fm), flags=fm)
            return b.select(b.fcmp_ordered(">=", z, c(0.0)), r, b.fmul(e, r, flags=fm))
        if op == "softplus":
            # max(z, 0) + log1p(exp(-|z|))
            z = args[0]
            pos = self.intrinsic(b, "maxnum", z.type, [z, c(0.0)])
            return b.fadd(pos, self.libcall(b, "log1p", [self.exp_neg_abs(b, z)]), flags=fm)
        if op == "sign":
            x = args[0]
            return b.select(b.fcmp_ordered(">", x, c(0.0)), c(1.0),
                            b.select(b.fcmp_ordered("<", x, c(0.0)), c(-1.0), x))
        if op == "heaviside":
            x, h0 = args
            return b.select(b.fcmp_ordered(">", x, c(0.0)), c(1.0),
                            b.select(b.fcmp_ordered("<", x, c(0.0)), c(0.0),
                                     b.select(b.fcmp_ordered("==", x, x), h0, x)))
        if op == "select":
            return b.select(args[0], args[1], args[2])
        if op == "detach":
            return args[0]
        cmp = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "=="}
        if op in cmp:
            return b.fcmp_ordered(cmp[op], args[0], args[1])
        if op == "ne":
            return b.fcmp_unordered("!=", args[0], args[1])
        if op == "and":
            return b.and_(args[0], args[1])
        if op == "or":
            return b.or_(args[0], args[1])
        if op == "not":
            return b.not_(args[0])
        raise LoweringError(f"no LLVM lowering for IR op {op!r}")

    def exp_neg_abs(self, b, z):
        """exp(-|z|), computed once for z and -z (sigmoid(z) and sigmoid(-z) share it)."""
        key = ("exp_neg_abs", _abs_key(z))
        hit = self._splats.get(key)
        if hit is None:
            a = self.intrinsic(b, "fabs", z.type, [z])
            hit = (z, self.libcall(b, "exp", [b.fneg(a, flags=FASTMATH)]))
            self._splats[key] = hit
        return hit[1]

    def powi(self, b, x, n):
        """x**n for an integer n >= 0 by repeated squaring (exact up to rounding per multiply)."""
        result, base = None, x
        while n:
            if n & 1:
                result = base if result is None else b.fmul(result, base, flags=FASTMATH)
            n >>= 1
            if n:
                base = b.fmul(base, base, flags=FASTMATH)
        return result if result is not None else self.const(1.0, isinstance(x.type, ir.VectorType))

    def operand(self, b, env, a, vector, bool_arg=False):
        if isinstance(a, str):
            v = env[a]
            return self.splat(b, v, key=a) if vector else v
        if isinstance(a, bool):
            c = ir.Constant(I1, int(a))
            return ir.Constant(ir.VectorType(I1, self.lanes), [c] * self.lanes) \
                if vector and self.lanes > 1 else c
        return self.const(a, vector)

    def compute(self, b, env, instrs, vector):
        for ins in instrs:
            if ins.op == "powi":
                args = [self.operand(b, env, ins.args[0], vector), int(ins.args[1])]
            else:
                args = [self.operand(b, env, a, vector) for a in ins.args]
            env[ins.target] = self.apply(b, ins.op, args, vector)

    # -- the loop ---------------------------------------------------------------
    def emit(self):
        P, fn, lanes = self.program, self.fn, self.lanes
        theta, cols, start, end, out, _ = fn.args
        entry = fn.append_basic_block("entry")
        b = ir.IRBuilder(entry)
        env = {}
        for k, name in enumerate(P.params):
            v = b.load(b.gep(theta, [ir.Constant(I64, k)], source_etype=F64), typ=F64)
            env[name] = b.fptrunc(v, F32) if self.single else v
        hoisted = [ins for ins in P.body if ins.target not in self.varying]
        looped = [ins for ins in P.body if ins.target in self.varying]
        self.compute(b, env, hoisted, vector=False)
        colptr = [b.load(b.gep(cols, [ir.Constant(I64, j)], source_etype=PTR), typ=PTR)
                  for j in range(len(P.data))]
        outs = list(P.outputs)
        reduce = self.mode == "reduce"
        varying_out = [k for k, o in enumerate(outs) if isinstance(o, str) and o in self.varying]
        # sum(v + c) = sum(v) + n*c: accumulate only the per-sample part of an output and add
        # the sample-invariant part (e.g. a regularization term) once, at the end
        constant_part = {}
        if reduce:
            defs = {ins.target: ins for ins in P.body}
            for k in varying_out:
                name, extra = outs[k], []
                while True:
                    ins = defs.get(name)
                    if ins is None or ins.op not in ("add", "sub"):
                        break
                    left, right = ins.args
                    if not _varies(right, self.varying):
                        extra.append((right, 1.0 if ins.op == "add" else -1.0))
                        name = left
                    elif ins.op == "add" and not _varies(left, self.varying):
                        extra.append((left, 1.0))
                        name = right
                    else:
                        break
                if extra:
                    outs[k] = name
                    constant_part[k] = extra
        self.env, self.looped, self.outs, self.varying_out = env, looped, outs, varying_out

        bufs = [_alloca(b, self.VT, f"tailbuf{j}") for j in range(len(P.data))]
        n_map = 0 if reduce else len(outs)
        outbufs = [_alloca(b, self.VT, f"tailout{k}") for k in range(n_map)]
        outptr = [b.load(b.gep(out, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
                  for k in range(n_map)]
        self.setup_accumulators(b)
        count = b.sub(end, start)
        vend = b.add(start, b.mul(b.udiv(count, ir.Constant(I64, lanes)), ir.Constant(I64, lanes)))
        rem = b.sub(end, vend)

        outer = fn.append_basic_block("outer")
        main_setup = fn.append_basic_block("main_setup")
        tail_check = fn.append_basic_block("tail_check")
        tail_setup = fn.append_basic_block("tail_setup")
        run = fn.append_basic_block("block")
        inner = fn.append_basic_block("inner")
        flush = fn.append_basic_block("flush")
        exit_ = fn.append_basic_block("exit")
        ready = b.block
        b.branch(outer)

        b.position_at_end(outer)
        bstart = b.phi(I64, "b")
        bstart.add_incoming(start, ready)
        b.cbranch(b.icmp_signed("<", bstart, vend), main_setup, tail_check)

        b.position_at_end(main_setup)
        bend = b.add(bstart, ir.Constant(I64, BLOCK_ITERATIONS * lanes))
        bend = b.select(b.icmp_signed("<", bend, vend), bend, vend)
        b.branch(run)

        b.position_at_end(tail_check)
        b.cbranch(b.icmp_signed(">", rem, ir.Constant(I64, 0)), tail_setup, exit_)

        b.position_at_end(tail_setup)
        last = b.sub(end, ir.Constant(I64, 1))
        for lane in range(lanes):
            src = b.add(vend, ir.Constant(I64, lane))
            src = b.select(b.icmp_signed("<", src, end), src, last)
            for j in range(len(P.data)):
                v = b.load(b.gep(colptr[j], [src], source_etype=self.T), typ=self.T)
                b.store(v, b.gep(bufs[j], [ir.Constant(I64, lane)], source_etype=self.T))
        b.branch(run)

        b.position_at_end(run)
        lo = b.phi(I64, "lo")
        hi = b.phi(I64, "hi")
        is_tail = b.phi(I1, "is_tail")
        lo.add_incoming(bstart, main_setup)
        hi.add_incoming(bend, main_setup)
        is_tail.add_incoming(ir.Constant(I1, 0), main_setup)
        lo.add_incoming(ir.Constant(I64, 0), tail_setup)
        hi.add_incoming(ir.Constant(I64, lanes), tail_setup)
        is_tail.add_incoming(ir.Constant(I1, 1), tail_setup)
        bases = [b.select(is_tail, bufs[j], colptr[j]) for j in range(len(P.data))]
        out_bases = [b.select(is_tail, outbufs[k], outptr[k]) for k in range(n_map)]
        self.reset_accumulators(b)
        b.branch(inner)

        b.position_at_end(inner)
        i = b.phi(I64, "i")
        i.add_incoming(lo, run)
        self.iteration(b, bases, i, out_bases)
        inext = b.add(i, ir.Constant(I64, lanes))
        i.add_incoming(inext, b.block)
        b.cbranch(b.icmp_signed("<", inext, hi), inner, flush)

        b.position_at_end(flush)
        if reduce and varying_out:
            idx = [ir.Constant(I64, l) for l in range(lanes)]
            if lanes > 1:
                iota = ir.Constant(ir.VectorType(I64, lanes), idx)
                lane_ok = b.icmp_signed("<", iota, self.splat(b, rem))
                mask = b.or_(lane_ok, self.splat(b, b.not_(is_tail)))
            else:
                mask = ir.Constant(I1, 1)
            self.flush_accumulators(b, mask)
        if not reduce:
            copy_tail = fn.append_basic_block("copy_tail")
            after = fn.append_basic_block("after_flush")
            b.cbranch(is_tail, copy_tail, after)
            b.position_at_end(copy_tail)
            for lane in range(lanes):
                ok = fn.append_basic_block(f"copy{lane}")
                nxt = fn.append_basic_block(f"copy{lane}_done")
                b.cbranch(b.icmp_signed("<", ir.Constant(I64, lane), rem), ok, nxt)
                b.position_at_end(ok)
                for k in range(n_map):
                    v = b.load(b.gep(outbufs[k], [ir.Constant(I64, lane)], source_etype=self.T),
                               typ=self.T)
                    b.store(v, b.gep(outptr[k], [b.add(vend, ir.Constant(I64, lane))],
                                     source_etype=self.T))
                b.branch(nxt)
                b.position_at_end(nxt)
            b.branch(exit_)
            b.position_at_end(after)
        bstart.add_incoming(hi, b.block)
        b.cbranch(is_tail, exit_, outer)

        b.position_at_end(exit_)
        if reduce:
            self.finish(b, b.uitofp(count, F64), constant_part)
        self.release(b)
        b.ret_void()

    # -- accumulators: one register-promoted alloca per output ---------------------
    def setup_accumulators(self, b):
        """Create the per-output accumulators (in the entry block)."""
        reduce = self.mode == "reduce"
        self.acc = {k: _alloca(b, self.VT, f"acc{k}") for k in self.varying_out} if reduce else {}
        self.dacc = {k: _alloca(b, self.DVT, f"dacc{k}") for k in self.varying_out} if reduce else {}
        for k in self.dacc:
            b.store(ir.Constant(self.DVT, None), self.dacc[k])

    def reset_accumulators(self, b):
        """Zero the per-block accumulators (before each block of iterations)."""
        for k in self.acc:
            b.store(ir.Constant(self.VT, None), self.acc[k])

    def iteration(self, b, bases, i, out_bases):
        """One vector of samples at index ``i``: compute the body, accumulate or store."""
        P = self.program
        lenv = dict(self.env)
        for j, name in enumerate(P.data):
            p = b.gep(bases[j], [i], source_etype=self.T)
            lenv[name] = b.load(p, typ=self.VT, align=4 if self.single else 8)
        self.compute(b, lenv, self.looped, vector=True)
        if self.mode == "reduce":
            for k in self.varying_out:
                acc = self.acc[k]
                b.store(b.fadd(b.load(acc, typ=self.VT), lenv[self.outs[k]], flags=FASTMATH), acc)
        else:
            for k, base in enumerate(out_bases):
                v = self.operand(b, lenv, self.outs[k], vector=True)
                b.store(v, b.gep(base, [i], source_etype=self.T), align=4 if self.single else 8)

    def flush_accumulators(self, b, mask):
        """Add a block's accumulators, lanes past the data masked out, into the float64 sums."""
        for k in self.varying_out:
            a = b.select(mask, b.load(self.acc[k], typ=self.VT), ir.Constant(self.VT, None))
            if self.single:
                a = b.fpext(a, self.DVT)
            b.store(b.fadd(b.load(self.dacc[k], typ=self.DVT), a), self.dacc[k])

    def finish(self, b, n, constant_part):
        """Write ``scale`` times each output's total over the samples into ``sums``."""
        out, scale = self.fn.args[4], self.fn.args[5]
        for k, o in enumerate(self.outs):
            if k in self.dacc:
                total = self.horizontal_sum(b, b.load(self.dacc[k], typ=self.DVT))
                total = self.add_constant_part(b, total, n, constant_part.get(k, ()))
            else:
                total = self.sample_invariant_total(b, o, n)
            total = b.fmul(total, scale)
            b.store(total, b.gep(out, [ir.Constant(I64, k)], source_etype=F64))

    def add_constant_part(self, b, total, n, terms):
        for term, sign in terms:
            v = self.operand(b, self.env, term, vector=False)
            v = b.fpext(v, F64) if self.single else v
            total = b.fadd(total, b.fmul(ir.Constant(F64, sign), b.fmul(v, n)))
        return total

    def sample_invariant_total(self, b, o, n):
        if isinstance(o, str):
            v = self.env[o]
            return b.fmul(b.fpext(v, F64) if self.single else v, n)
        return b.fmul(ir.Constant(F64, float(o)), n)

    def release(self, b):
        """Free what the function allocated (nothing here: allocas go with the frame)."""

    def horizontal_sum(self, b, vec):
        """Sum of lanes in a fixed pairwise order (deterministic, no reassociation flags)."""
        if self.lanes == 1:
            return vec
        vals = [b.extract_element(vec, ir.Constant(I32, l)) for l in range(self.lanes)]
        while len(vals) > 1:
            vals = [b.fadd(vals[k], vals[k + 1]) if k + 1 < len(vals) else vals[k]
                    for k in range(0, len(vals), 2)]
        return vals[0]


class _SplitFunctionEmitter(_FunctionEmitter):
    """The same loop, with a huge body cut into segment functions called in turn.

    Why: LLVM's optimizer and back end grow faster than linearly in the size of one
    basic block (a 20,000-instruction body took minutes), while a function of a bounded
    size costs a bounded time, so compile time grows linearly with the program. Each
    iteration (one vector of samples) calls ``<name>.seg0``, ``<name>.seg1``, ... with
    the same index; a value one segment computes and a later one uses goes through a
    scratch buffer (one vector per value, so it stays in cache), and the accumulators
    live in memory, flushed and summed by loops rather than by code per output. The
    buffer is one ``malloc`` per call; if it fails, every result is NaN.
    """

    def setup_accumulators(self, b):
        P, reduce = self.program, self.mode == "reduce"
        params = {name: k for k, name in enumerate(P.params)}
        segments = [self.looped[s:s + SEGMENT_INSTRUCTIONS]
                    for s in range(0, len(self.looped), SEGMENT_INSTRUCTIONS)]
        defined_in = {ins.target: s for s, seg in enumerate(segments) for ins in seg}
        spilled, scalars = {}, {}
        outputs = self.varying_out if reduce else list(range(len(self.outs)))
        owner = {}  # output index -> the segment that accumulates or stores it
        for k in outputs:
            o = self.outs[k]
            owner[k] = defined_in.get(o, 0) if isinstance(o, str) else 0
        uses = [[a for ins in seg for a in ins.args if isinstance(a, str)] for seg in segments]
        for k, s in owner.items():
            if isinstance(self.outs[k], str):
                uses[s].append(self.outs[k])
        for s, names in enumerate(uses):
            for a in names:
                if a in defined_in:
                    if defined_in[a] < s:
                        spilled.setdefault(a, len(spilled))
                elif a not in self.varying and a not in params:
                    scalars.setdefault(a, len(scalars))
        vbytes = self.lanes * (4 if self.single else 8)
        dbytes = self.lanes * 8
        nacc = len(self.varying_out) if reduce else 0
        self.nacc = nacc
        self.acc_at = nacc * dbytes
        self.spill_at = self.acc_at + nacc * vbytes
        self.scalar_at = self.spill_at + len(spilled) * vbytes
        total = max(64, self.scalar_at + len(scalars) * (4 if self.single else 8))
        self.spilled, self.spill_types, self.vbytes = spilled, {}, vbytes

        malloc = self.declare("malloc", PTR, [I64])
        self.mem = b.call(malloc, [ir.Constant(I64, total)])
        failed = self.fn.append_basic_block("no_memory")
        ok = self.fn.append_basic_block("memory")
        b.cbranch(b.icmp_unsigned("==", self.mem, ir.Constant(PTR, None)), failed, ok)
        b.position_at_end(failed)
        self.fill_with_nan(b)
        b.ret_void()
        b.position_at_end(ok)
        for name, slot in scalars.items():
            b.store(self.env[name], self.at(b, self.scalar_at + slot * (4 if self.single else 8)))
        zero_bytes = self.spill_at  # dacc and acc
        if zero_bytes:
            self.counted_loop(b, zero_bytes // 8, lambda b, j: b.store(
                ir.Constant(I64, 0), b.gep(self.mem, [j], source_etype=I64)))
        self.bases_array = _alloca(b, ir.ArrayType(PTR, max(1, len(P.data))), "bases")
        self.out_array = None if reduce else _alloca(b, ir.ArrayType(PTR, max(1, len(self.outs))), "outs")
        self.segment_fns = [self.emit_segment(s, seg, params, scalars,
                                              [k for k in owner if owner[k] == s])
                            for s, seg in enumerate(segments)]

    def at(self, b, offset):
        return b.gep(self.mem, [ir.Constant(I64, offset)], source_etype=ir.IntType(8))

    def counted_loop(self, b, n, body):
        """``for j in range(n): body(b, j)`` for a compile-time ``n`` (nothing when 0)."""
        if n <= 0:
            return
        before = b.block
        loop = b.function.append_basic_block("loop")
        done = b.function.append_basic_block("loop_done")
        b.branch(loop)
        b.position_at_end(loop)
        j = b.phi(I64, "j")
        j.add_incoming(ir.Constant(I64, 0), before)
        body(b, j)
        nxt = b.add(j, ir.Constant(I64, 1))
        j.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_signed("<", nxt, ir.Constant(I64, n)), loop, done)
        b.position_at_end(done)

    def fill_with_nan(self, b):
        out = self.fn.args[4]
        nan = ir.Constant(F64 if self.mode == "reduce" else self.T, float("nan"))
        if self.mode == "reduce":
            self.counted_loop(b, len(self.outs), lambda b, j: b.store(
                nan, b.gep(out, [j], source_etype=F64)))
            return
        start, end = self.fn.args[2], self.fn.args[3]
        for k in range(len(self.outs)):
            column = b.load(b.gep(out, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
            before = b.block
            loop = b.function.append_basic_block(f"nan{k}")
            done = b.function.append_basic_block(f"nan{k}_done")
            b.cbranch(b.icmp_signed("<", start, end), loop, done)
            b.position_at_end(loop)
            j = b.phi(I64, "j")
            j.add_incoming(start, before)
            b.store(nan, b.gep(column, [j], source_etype=self.T))
            nxt = b.add(j, ir.Constant(I64, 1))
            j.add_incoming(nxt, loop)
            b.cbranch(b.icmp_signed("<", nxt, end), loop, done)
            b.position_at_end(done)

    def emit_segment(self, s, seg, params, scalars, outputs):
        """``void <name>.seg<s>(theta, bases, i, mem, outs)``: one slice of the body (``outs``: the
        table of output columns in map mode)."""
        fnty = ir.FunctionType(ir.VoidType(), [PTR, PTR, I64, PTR, PTR])
        f = ir.Function(self.module, fnty, name=f"{self.fn.name}.seg{s}")
        f.linkage = "internal"
        f.attributes.add("nounwind")
        f.attributes.add("noinline")
        for a in (0, 1, 3, 4):
            f.args[a].add_attribute("noalias")
        theta, bases, i, mem, out = f.args
        b = ir.IRBuilder(f.append_basic_block("entry"))
        main_splats, self._splats = self._splats, {}
        data = {name: j for j, name in enumerate(self.program.data)}
        defined = {ins.target for ins in seg}
        env = {}
        width = 4 if self.single else 8
        needed = [a for ins in seg for a in ins.args if isinstance(a, str)]
        needed += [self.outs[k] for k in outputs if isinstance(self.outs[k], str)]
        for name in needed:
            if name in env or name in defined:
                continue
            if name in data:
                base = b.load(b.gep(bases, [ir.Constant(I64, data[name])], source_etype=PTR), typ=PTR)
                env[name] = b.load(b.gep(base, [i], source_etype=self.T), typ=self.VT, align=width)
            elif name in params:
                v = b.load(b.gep(theta, [ir.Constant(I64, params[name])], source_etype=F64), typ=F64)
                env[name] = b.fptrunc(v, F32) if self.single else v
            elif name in self.spilled:
                p = b.gep(mem, [ir.Constant(I64, self.spill_at + self.spilled[name] * self.vbytes)],
                          source_etype=ir.IntType(8))
                env[name] = b.load(p, typ=self.spill_types[name], align=width)
            else:
                p = b.gep(mem, [ir.Constant(I64, self.scalar_at + scalars[name] * width)],
                          source_etype=ir.IntType(8))
                env[name] = b.load(p, typ=self.T)
        self.compute(b, env, seg, vector=True)
        for ins in seg:
            if ins.target in self.spilled:
                v = env[ins.target]
                self.spill_types[ins.target] = v.type
                p = b.gep(mem, [ir.Constant(I64, self.spill_at + self.spilled[ins.target] * self.vbytes)],
                          source_etype=ir.IntType(8))
                b.store(v, p, align=width)
        for k in outputs:
            v = self.operand(b, env, self.outs[k], vector=True)
            if self.mode == "reduce":
                p = b.gep(mem, [ir.Constant(I64, self.acc_at + self.slot(k) * self.vbytes)],
                          source_etype=ir.IntType(8))
                b.store(b.fadd(b.load(p, typ=self.VT, align=width), v, flags=FASTMATH), p, align=width)
            else:
                column = b.load(b.gep(out, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
                b.store(v, b.gep(column, [i], source_etype=self.T), align=width)
        b.ret_void()
        self._splats = main_splats
        return f

    def slot(self, k):
        if not hasattr(self, "_slots"):
            self._slots = {k: n for n, k in enumerate(self.varying_out)}
        return self._slots[k]

    def reset_accumulators(self, b):
        """Nothing: the accumulators start at zero and each flush zeroes them again."""

    def iteration(self, b, bases, i, out_bases):
        theta = self.fn.args[0]
        for j, base in enumerate(bases):
            b.store(base, b.gep(self.bases_array, [ir.Constant(I64, 0), ir.Constant(I64, j)],
                                source_etype=self.bases_array.allocated_type))
        for k, base in enumerate(out_bases):
            b.store(base, b.gep(self.out_array, [ir.Constant(I64, 0), ir.Constant(I64, k)],
                                source_etype=self.out_array.allocated_type))
        out = self.out_array if self.out_array is not None else ir.Constant(PTR, None)
        for f in self.segment_fns:
            b.call(f, [theta, self.bases_array, i, self.mem, out])

    def flush_accumulators(self, b, mask):
        vbytes, dbytes = self.vbytes, self.lanes * 8

        def body(b, j):
            pa = b.gep(self.mem, [b.add(ir.Constant(I64, self.acc_at), b.mul(j, ir.Constant(I64, vbytes)))],
                       source_etype=ir.IntType(8))
            pd = b.gep(self.mem, [b.mul(j, ir.Constant(I64, dbytes))], source_etype=ir.IntType(8))
            a = b.select(mask, b.load(pa, typ=self.VT, align=8), ir.Constant(self.VT, None))
            if self.single:
                a = b.fpext(a, self.DVT)
            b.store(b.fadd(b.load(pd, typ=self.DVT, align=8), a), pd, align=8)
            b.store(ir.Constant(self.VT, None), pa, align=8)
        self.counted_loop(b, self.nacc, body)

    def finish(self, b, n, constant_part):
        out, scale = self.fn.args[4], self.fn.args[5]
        index = ir.ArrayType(I64, max(1, self.nacc))
        table = ir.GlobalVariable(self.module, index, name=f"{self.fn.name}.outputs")
        table.linkage = "internal"
        table.global_constant = True
        table.initializer = ir.Constant(index, [ir.Constant(I64, k) for k in self.varying_out] or
                                        [ir.Constant(I64, 0)])
        dbytes = self.lanes * 8

        def total(b, j):
            pd = b.gep(self.mem, [b.mul(j, ir.Constant(I64, dbytes))], source_etype=ir.IntType(8))
            k = b.load(b.gep(table, [ir.Constant(I64, 0), j], source_etype=index), typ=I64)
            b.store(self.horizontal_sum(b, b.load(pd, typ=self.DVT, align=8)),
                    b.gep(out, [k], source_etype=F64))
        self.counted_loop(b, self.nacc, total)
        for k, o in enumerate(self.outs):
            p = b.gep(out, [ir.Constant(I64, k)], source_etype=F64)
            if k in constant_part:
                b.store(self.add_constant_part(b, b.load(p, typ=F64), n, constant_part[k]), p)
            elif k not in self.varying_out:
                b.store(self.sample_invariant_total(b, o, n), p)

        def scaled(b, j):
            p = b.gep(out, [j], source_etype=F64)
            b.store(b.fmul(b.load(p, typ=F64), scale), p)
        self.counted_loop(b, len(self.outs), scaled)

    def release(self, b):
        b.call(self.declare("free", ir.VoidType(), [PTR]), [self.mem])
