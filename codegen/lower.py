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
* ``map`` — same arguments, ``T* out`` (``scale`` unused): writes output 0 of every sample.

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
        _FunctionEmitter(module, program.select(list(outputs)), name, mode,
                         single=single, lanes=lanes, isa=isa).emit()
    return module


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

    # -- types and constants --------------------------------------------------
    def vtype(self, kind, vector):
        base = I1 if kind == "bool" else self.T
        return ir.VectorType(base, self.lanes) if vector and self.lanes > 1 else base

    def const(self, value, vector):
        c = ir.Constant(self.T, float(value))
        if vector and self.lanes > 1:
            return ir.Constant(self.VT, [c] * self.lanes)
        return c

    def splat(self, b, value, key=None):
        if self.lanes == 1 or isinstance(value.type, ir.VectorType):
            return value
        if key is not None and key in self._splats:
            return self._splats[key]
        vty = ir.VectorType(value.type, self.lanes)
        undef = ir.Constant(vty, ir.Undefined)
        one = b.insert_element(undef, value, ir.Constant(I32, 0))
        mask = ir.Constant(ir.VectorType(I32, self.lanes), [ir.Constant(I32, 0)] * self.lanes)
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
        theta, cols, start, end, out, scale = fn.args
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
        outbuf = _alloca(b, self.VT, "tailout")
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
        out_base = b.select(is_tail, outbuf, out) if not reduce else None
        self.reset_accumulators(b)
        b.branch(inner)

        b.position_at_end(inner)
        i = b.phi(I64, "i")
        i.add_incoming(lo, run)
        self.iteration(b, bases, i, out_base)
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
                v = b.load(b.gep(outbuf, [ir.Constant(I64, lane)], source_etype=self.T), typ=self.T)
                b.store(v, b.gep(out, [b.add(vend, ir.Constant(I64, lane))], source_etype=self.T))
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

    def iteration(self, b, bases, i, out_base):
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
            v = self.operand(b, lenv, self.outs[0], vector=True)
            b.store(v, b.gep(out_base, [i], source_etype=self.T), align=4 if self.single else 8)

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
