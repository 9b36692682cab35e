"""Lower an array :class:`Program` (``program.shapes`` non-empty) to LLVM IR.

The batch is processed in tiles of at most ``plan.tile_rows`` samples; within a tile a
varying value of per-sample shape ``(r, c)`` is a row-major ``(B, r*c)`` buffer
(``vmap``'s batching), so that

* ``dot(W, x)`` with W shared and x varying is one GEMM ``X @ W.T`` over the tile;
* a gradient output ``dot(delta, x, False, True)`` of two varying vectors, summed over
  the samples, is one GEMM ``Delta.T @ X`` accumulated into the tile's gradient;
* each maximal run of elementwise instructions of one per-sample size is one fused
  SIMD loop over the tile (bias add and activation right after a GEMM are one loop),
  with transcendental functions from vector math (``codegen.vecmath``), the very
  emitters of the scalar lowering (``codegen.lower``); a vector-math call later in the
  program joins the first such loop where its operands exist (``_join_calls``);
* each maximal run of small per-sample ops that holds an array op (a contraction with a
  side of at most ``TINY``, sums, maxima, broadcasts; no vector-math call) is one loop
  over the samples (``codegen.lower_rows``): the output layer and softmax of an MLP run
  from registers, with no GEMM of width 10 and no pass per op, and the sums over the
  samples it can take (bias gradients, small outer products) are accumulated there.

Two functions are emitted:

* ``symdiff_prepare(double* theta, T* hoist)`` computes, once per call, every value
  that does not depend on data (parameters converted to ``T``, their products,
  transposes, ...) into the ``hoist`` buffer — the same emitters run on a "batch" of
  one sample;
* ``symdiff_tile(T* hoist, T** data, i64 start, i64 end, double* sums, T* scratch,
  i64 flags)`` adds to ``sums`` the sum over samples ``start..end`` of every varying
  output (flat: loss, then each gradient raveled C-order), except the parts computed
  by GEMM, which it accumulates in ``T`` into ``scratch`` at ``plan.acc``
  (``Delta.T @ X``); ``flags`` say whether to zero the sums first, to start the
  accumulators afresh, and to add them into the sums at the end (so ``T`` sums stay
  short). ``scratch`` also holds the tile's buffers. The caller adds the
  sample-invariant output parts (``n * value``).

The layout (:class:`ArrayPlan`) is plain Python, so a kernel loaded from the disk
cache knows its buffer sizes without lowering again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llvmlite import ir

from . import blas, vecmath
from .lower import FASTMATH, LoweringError, _FunctionEmitter, emit_for
from .lower_rows import _RowLoop
from .target import host_target

I1, I32, I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()

#: elementwise ops that call a vector math routine: a row loop leaves them to fused loops
#: (a call per sample spills every register the loop holds, and wastes a vector's spare lanes)
CALLS = frozenset(vecmath.LIBM) | {"sigmoid", "softplus"}
ARRAY_OPS = frozenset({"dot", "transpose", "sum", "broadcast", "amax", "index", "onehot", "eye"})
BOOL_OPS = frozenset({"gt", "ge", "lt", "le", "eq", "ne", "and", "or", "not"})
#: rows per tile: large enough that GEMMs run near peak, small enough to stay in cache
TILE_ROWS = 1024
#: a per-sample value of at most this many vectors is held in registers by a row loop
ROW_VECTORS = 16
#: a contraction whose smaller dimension is at most this stays in the row loop (no GEMM) ...
TINY = 16
#: ... if unrolled it takes at most this many vector multiply-adds per sample
TINY_DOT_FMAS = 256
#: a per-sample outer product summed over the samples is accumulated in at most this many
#: vector registers by a row loop (half that without AVX-512's 32 registers); a larger
#: one is a GEMM over the tile
OUTER_ACC_VECTORS = 32


def _size(shape) -> int:
    return shape[0] * shape[1] if shape else 1


@dataclass
class ArrayPlan:
    """Where every value lives and how each output is summed (no LLVM involved).

    ``hoist``/``scratch`` map names to element offsets in the two ``T`` buffers;
    ``repeat`` maps a shared array used by a fused loop to its tiled copy in ``hoist``
    (``p`` repeated until ``size + lanes - 1`` elements, so a vector starting at any
    element index modulo the size is one contiguous load).
    """

    program: object
    lanes: int
    mode: str = "reduce"        # "reduce": sums of every output; "map": output 0 per sample
    tile_rows: int = TILE_ROWS
    hoist: dict = field(default_factory=dict)
    repeat: dict = field(default_factory=dict)
    scratch: dict = field(default_factory=dict)
    hoist_size: int = 0
    scratch_size: int = 0
    out_offsets: list = field(default_factory=list)
    n_flat: int = 0

    def __post_init__(self):
        P = self.program
        self.shape = P.shape
        self.size = lambda n: _size(P.shape(n))
        self.varying = P.varying()
        self.defs = {ins.target: ins for ins in P.body}
        at = 0
        for o in P.outputs:
            self.out_offsets.append(at)
            at += self.size(o) if isinstance(o, str) else 1
        self.n_flat = at
        self._plan_outputs()
        self._plan_liveness()
        self._plan_row_terms()
        self._plan_memory()

    # -- which parts of each output are summed how ----------------------------
    def _terms(self, name, sign, shape, out):
        ins = self.defs.get(name) if isinstance(name, str) else None
        if not isinstance(name, str) or name not in self.varying:
            out.append(("const", name, sign))
            return
        if ins is not None and ins.op in ("add", "sub", "neg") and all(
                isinstance(a, str) and self.shape(a) == shape for a in ins.args):
            if ins.op == "neg":
                self._terms(ins.args[0], -sign, shape, out)
            else:
                self._terms(ins.args[0], sign, shape, out)
                self._terms(ins.args[1], sign if ins.op == "add" else -sign, shape, out)
            return
        if ins is not None and ins.op == "dot" and self._outer(ins):
            out.append(("gemm", name, sign))
            return
        out.append(("sum", name, sign))

    def _outer(self, ins) -> bool:
        """dot(a, b) of two varying values with op(a) a column and op(b) a row per sample."""
        a, b, ta, tb = ins.args
        if not (a in self.varying and b in self.varying):
            return False
        sa, sb = self.shape(a), self.shape(b)
        col = sa[1] == 1 if not ta else sa[0] == 1
        row = sb[0] == 1 if not tb else sb[1] == 1
        return col and row

    def _plan_outputs(self):
        P = self.program
        self.terms = []  # per output: list of (kind, name or float, sign)
        if self.mode == "map":
            return
        for k, o in enumerate(P.outputs):
            terms = []
            self._terms(o, 1.0, self.shape(o) if isinstance(o, str) else (), terms)
            self.terms.append(terms)

    # -- what must be computed -------------------------------------------------
    def _plan_liveness(self):
        P = self.program
        need = set()
        out = self.program.outputs[0]
        if self.mode == "map" and isinstance(out, str):
            need.add(out)
        for terms in self.terms:
            for kind, name, _ in terms:
                if kind == "gemm":
                    need.update(a for a in self.defs[name].args[:2])
                elif isinstance(name, str):
                    need.add(name)
        for ins in reversed(P.body):
            if ins.target in need:
                need.update(a for a in ins.args if isinstance(a, str) and not isinstance(a, bool))
        self.live = need
        self.hoisted = [ins for ins in P.body if ins.target in need and ins.target not in self.varying]
        self.looped = self._join_calls([ins for ins in P.body if ins.target in need and ins.target in self.varying])
        self.regions = self._regions(self.looped, rows=True)
        flops = 0
        for ins in self.looped:
            if ins.op == "dot":
                (ra, ca), sb = self.shape(ins.args[0]), self.shape(ins.args[1])
                flops += 2 * ra * ca * (sb[0] * sb[1] // (ca if not ins.args[2] else ra))
            else:
                flops += self.size(ins.target)
        for terms in self.terms:
            flops += sum(2 * self.size(n) for kind, n, _ in terms if kind == "gemm")
        self.flops_per_sample = flops

    def _regions(self, instrs, rows=False):
        """The schedule: ("ew", [instrs], size) fused runs, ("op", instr) array ops and, when
        ``rows``, ("rows", [instrs]) row loops: each maximal run of instructions that a loop
        over the samples can compute from registers (elementwise ops, sums, maxima,
        broadcasts, tiny contractions) and that holds at least one array op."""
        steps = []

        def add(ins):
            if ins.op in ARRAY_OPS:
                steps.append(("op", ins))
                return
            s = self.size(ins.target)
            if steps and steps[-1][0] == "ew" and steps[-1][2] == s:
                steps[-1][1].append(ins)
            else:
                steps.append(("ew", [ins], s))

        run = []

        def close():
            if any(i.op in ARRAY_OPS for i in run):
                steps.append(("rows", list(run)))
            else:
                for i in run:
                    add(i)
            run.clear()

        for ins in instrs:
            if rows and self._row_eligible(ins):
                run.append(ins)
                continue
            close()
            add(ins)
        close()
        return steps

    def _join_calls(self, instrs):
        """``instrs`` reordered so that each vector-math call (with the cheap elementwise ops
        only it uses) joins the first earlier fused loop of its size where its operands
        exist: one pass less over memory, and ``sigmoid(-z)`` next to ``sigmoid(z)`` shares
        its ``exp``. Legal: the moved ops keep their operands before and consumers after."""
        users = {}
        for ins in instrs:
            for a in ins.args:
                if isinstance(a, str):
                    users.setdefault(a, []).append(ins.target)
        for name in self._outputs_summed():
            users.setdefault(name, []).append(None)
        for _ in range(len(instrs)):
            moved = self._join_one_call(instrs, users)
            if moved is None:
                return instrs
            instrs = moved
        return instrs

    def _join_one_call(self, instrs, users):
        steps = self._regions(instrs, rows=True)
        at, home = 0, {}
        ends = []
        for k, step in enumerate(steps):
            body = [step[1]] if step[0] == "op" else step[1]
            for i in body:
                home[i.target] = k
            at += len(body)
            ends.append(at)
        by_name = {i.target: i for i in instrs}
        for k, step in enumerate(steps):
            if step[0] != "ew" or step[2] < 2:
                continue
            for later in steps[k + 1:]:
                if later[0] != "ew" or later[2] != step[2]:
                    continue
                for ins in later[1]:
                    if ins.op not in CALLS:
                        continue
                    chain = self._chain(ins, k, home, by_name, users)
                    if chain is None:
                        continue
                    moving = {i.target for i in chain}
                    rest = [i for i in instrs if i.target not in moving]
                    cut = ends[k] - sum(1 for i in instrs[:ends[k]] if i.target in moving)
                    return rest[:cut] + chain + rest[cut:]
        return None

    def _chain(self, ins, k, home, by_name, users, depth=4):
        """``ins`` and the elementwise ops computing its operands that only it uses, in
        order, if all else they read is computed by step ``k``; else None."""
        chain = []
        for a in ins.args:
            if not isinstance(a, str) or a not in home or home[a] <= k:
                continue
            dep = by_name[a]
            if depth == 0 or dep.op in ARRAY_OPS or users.get(a) != [ins.target] \
                    or self.size(a) != self.size(ins.target):
                return None
            sub = self._chain(dep, k, home, by_name, users, depth - 1)
            if sub is None:
                return None
            chain += [i for i in sub if i not in chain]
        return chain + [ins]

    def _outputs_summed(self):
        names = set()
        for terms in self.terms:
            for kind, name, _ in terms:
                if kind == "gemm":
                    names.update(self.defs[name].args[:2])
                elif isinstance(name, str):
                    names.add(name)
        return names

    def _row_eligible(self, ins) -> bool:
        if self.lanes < 2:
            return False
        cap = ROW_VECTORS * self.lanes
        if ins.op not in ARRAY_OPS:
            return self.size(ins.target) <= cap and ins.op not in CALLS
        if ins.op in ("sum", "amax"):
            a = ins.args[0]
            return isinstance(a, str) and self.size(a) <= cap and not self.is_bool(a)
        if ins.op == "broadcast":
            return self.size(ins.target) <= cap
        if ins.op == "dot":
            return self.tiny_dot(ins) is not None
        return False

    def is_bool(self, name) -> bool:
        ins = self.defs.get(name)
        return ins is not None and ins.op in BOOL_OPS

    def tiny_dot(self, ins):
        """(A, ta, k, m) for ``dot(A, v)`` with A shared, v a varying vector of k elements and
        op(A) of shape (m, k), small enough to unroll in a row loop; else None."""
        a, v, ta, tb = ins.args
        if a in self.varying or v not in self.varying:
            return None
        sv = self.shape(v)
        if (sv[0] if tb else sv[1]) != 1:
            return None
        k = sv[1] if tb else sv[0]
        ra, ca = self.shape(a)
        m = ca if ta else ra
        nq = -(-m // self.lanes)
        if m == 1:
            ok = -(-k // self.lanes) <= ROW_VECTORS
        else:
            ok = min(m, k) <= TINY and k * nq <= TINY_DOT_FMAS and nq <= ROW_VECTORS
        return (a, ta, k, m) if ok else None

    def _plan_row_terms(self):
        """Sums of the outputs that the row loops accumulate in registers: ("rsum", name)
        for a value of a loop, or one in memory by then (data, a stored value: hosted by
        the loop with the fewest accumulators), ("rgemm", name) for a small outer product
        ``dot(x, y)`` of two per-sample columns, hosted by the loop computing the later of
        x, y."""
        self.row_terms = {}
        self.in_rows = set()
        home = {}
        for s, step in enumerate(self.regions):
            for i in ([step[1]] if step[0] == "op" else step[1]):
                home[i.target] = s
                if step[0] == "rows":
                    self.in_rows.add(i.target)
        L = self.lanes
        load = {s: 0 for s, step in enumerate(self.regions) if step[0] == "rows"}
        budget = OUTER_ACC_VECTORS if host_target().lanes(32) >= 16 else OUTER_ACC_VECTORS // 2

        def registers(kind, name):
            if kind == "rgemm":
                x, y = self.defs[name].args[:2]
                return self.size(x) * -(-self.size(y) // L)
            size = self.size(name)  # in double: up to two registers per vector
            return 1 if size == 1 else 2 * -(-size // L)

        later = []
        for k, terms in enumerate(self.terms):
            for t, (kind, name, sign) in enumerate(terms):
                host = None
                if kind == "sum" and name in self.in_rows:
                    host, kind = home[name], "rsum"
                elif kind == "sum":
                    later.append((k, t))
                elif kind == "gemm":
                    x, y, ta, tb = self.defs[name].args
                    p, q = self.size(x), self.size(y)
                    fits = not ta and tb and self.shape(x)[1] == 1 and self.shape(y)[1] == 1 \
                        and p * -(-q // L) <= budget and -(-q // L) <= ROW_VECTORS
                    s = max(home.get(x, -1), home.get(y, -1))
                    if L > 1 and fits and s >= 0 and self.regions[s][0] == "rows":
                        host, kind = s, "rgemm"
                if host is not None:
                    self._host(k, t, kind, name, sign, host)
                    load[host] += registers(kind, name)
        for k, t in later:
            _, name, sign = self.terms[k][t]
            hosts = [s for s in load if s > home.get(name, -1)]
            if hosts and self.size(name) <= ROW_VECTORS * L:
                host = min(hosts, key=lambda s: (load[s], s))
                self._host(k, t, "rsum", name, sign, host)
                load[host] += registers("rsum", name)

    def _host(self, k, t, kind, name, sign, host):
        self.terms[k][t] = (kind, name, sign)
        self.row_terms.setdefault(host, []).append((k, kind, name, sign))

    def stored(self, steps, outside_uses, hosted=None):
        """Names defined in fused runs or row loops of ``steps`` whose value is needed in
        memory (``hosted``: the row terms of each step, whose operands a loop reads)."""
        keep = set(outside_uses)
        home = {}
        for k, step in enumerate(steps):
            if step[0] != "op":
                for i in step[1]:
                    home[i.target] = k
        for k, step in enumerate(steps):
            body = [step[1]] if step[0] == "op" else step[1]
            uses = {a for i in body for a in i.args if isinstance(a, str)}
            for _, kind, name, _ in (hosted or {}).get(k, ()):
                uses.update(self.defs[name].args[:2] if kind == "rgemm" else [name])
            if step[0] == "op":
                keep.update(uses)
            else:
                keep.update(a for a in uses if a in home and home[a] != k)
        return keep

    # -- memory ------------------------------------------------------------------
    def _plan_memory(self):
        P, lanes = self.program, self.lanes
        at = 0

        def take(n):
            nonlocal at
            start = at
            at += n + lanes  # padding: fused loops run whole vectors
            at = -(-at // lanes) * lanes
            return start

        for name in P.params:
            self.hoist[name] = take(self.size(name))
        self.hoist_stored = self.stored(self._regions(self.hoisted), self._hoist_uses())
        for ins in self.hoisted:
            if ins.target in self.hoist_stored or ins.op in ARRAY_OPS:
                self.hoist[ins.target] = take(self.size(ins.target))
        for step in self.regions:
            if step[0] == "ew" and step[2] > 1:
                for ins in step[1]:
                    for a in ins.args:
                        if isinstance(a, str) and not isinstance(a, bool) and a not in self.varying \
                                and self.shape(a) and a not in self.repeat:
                            s = self.size(a)
                            self.repeat[a] = take(s * -(-(s + lanes - 1) // s))
        self.panels = {}  # (A, ta) -> (offset, k, m, mp): row j = column j of op(A), padded to mp
        for step in self.regions:
            if step[0] == "rows":
                for ins in step[1]:
                    if ins.op == "dot":
                        a, ta, k, m = self.tiny_dot(ins)
                        if m > 1 and (a, ta) not in self.panels:
                            mp = -(-m // lanes) * lanes
                            self.panels[(a, ta)] = (take(k * mp), k, m, mp)
        self.hoist_size = at

        at = 0
        B = self.tile_rows
        self.scratch_stored = self.stored(self.regions, self._tile_uses(), self.row_terms)
        for name in P.data:
            if name in self._data_in_fused():
                self.scratch[name] = take(B * self.size(name))
        for ins in self.looped:
            if ins.target in self.scratch_stored or (ins.op in ARRAY_OPS and ins.target not in self.in_rows):
                self.scratch[ins.target] = take(B * self.size(ins.target))
        self.scalar_bcast = self._scalar_bcasts(self.regions)
        for key in self.scalar_bcast:
            self.scratch[key] = take(B * key[1])
        self.acc = {}
        for k, terms in enumerate(self.terms):
            if any(kind in ("gemm", "rgemm") for kind, _, _ in terms):
                self.acc[k] = take(self.size(P.outputs[k]))
        self.scratch_size = at

    def _scalar_bcasts(self, steps):
        """(varying scalar, size) pairs that a fused run of that size reads per element."""
        out = []
        for step in steps:
            if step[0] == "ew" and step[2] > 1:
                for ins in step[1]:
                    for a in ins.args:
                        if isinstance(a, str) and not self.shape(a) and a in self.varying \
                                and (a, step[2]) not in out:
                            out.append((a, step[2]))
        return out

    def _data_in_fused(self):
        names = set()
        for step in self.regions:
            if step[0] == "ew":
                for ins in step[1]:
                    names.update(a for a in ins.args if isinstance(a, str) and a in self.program.data)
        return names

    def _hoist_uses(self):
        uses = set()
        for ins in self.looped:
            uses.update(a for a in ins.args if isinstance(a, str) and a not in self.varying)
        for terms in self.terms:
            uses.update(n for kind, n, _ in terms if kind == "const" and isinstance(n, str))
        out = self.program.outputs[0]
        if self.mode == "map" and isinstance(out, str) and out not in self.varying:
            uses.add(out)
        return uses

    def _tile_uses(self):
        uses = set()
        out = self.program.outputs[0]
        if self.mode == "map" and isinstance(out, str) and out in self.varying:
            uses.add(out)
        for terms in self.terms:
            for kind, name, _ in terms:
                if kind == "sum":
                    uses.add(name)
                elif kind == "gemm":
                    uses.update(a for a in self.defs[name].args[:2])
        return uses


def lower_array_to_llvm(program, *, single: bool, lanes: int, isa: str,
                        mode: str = "reduce") -> ir.Module:
    """The LLVM module with ``symdiff_prepare`` and ``symdiff_tile`` (mode ``"reduce"``) or
    ``symdiff_map_tile`` (mode ``"map"``: output 0 of each sample into ``out``, row by row)."""
    plan = ArrayPlan(program, lanes, mode)
    module = ir.Module(name="symdiff_array")
    _Prepare(module, plan, single=single, isa=isa).emit()
    (_MapTile if mode == "map" else _Tile)(module, plan, single=single, isa=isa).emit()
    return module


class _Emitter(_FunctionEmitter):
    """The array emitters: fused elementwise loops, GEMMs and small per-sample loops.

    ``self.loc[name]`` is ``("row", ptr, size)`` for a value with one row per sample of
    the current batch, or ``("shared", ptr, size)`` for one copy shared by all rows.
    """

    def __init__(self, module, plan, name, argtypes, *, single, isa):
        self.module, self.plan, self.single, self.isa = module, plan, single, isa
        self.lanes = plan.lanes
        self.T = F32 if single else F64
        self.VT = ir.VectorType(self.T, self.lanes) if self.lanes > 1 else self.T
        self.DVT = ir.VectorType(F64, self.lanes) if self.lanes > 1 else F64
        self._splats = {}
        self._consts = {}
        self.fn = ir.Function(module, ir.FunctionType(ir.VoidType(), argtypes), name=name)
        self.fn.attributes.add("nounwind")
        self.entry = self.fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.loc = {}
        self.repeat = {}
        self.panel = {}
        self.accumulate = False   # row loops add their terms (the reduce tile sets these)
        self.acc_started = set()  # outputs whose GEMM accumulator a row loop has written

    # -- small helpers ----------------------------------------------------------------
    def at(self, ptr, idx, ty=None):
        idx = idx if isinstance(idx, ir.Value) else ir.Constant(I64, int(idx))
        return self.b.gep(ptr, [idx], source_etype=ty or self.T)

    def i64(self, v):
        return v if isinstance(v, ir.Value) else ir.Constant(I64, int(v))

    def loop(self, lo, hi, body, step=1, name="i"):
        """for i in range(lo, hi, step): body(i) — ``body`` uses ``self.b``."""
        emit_for(self.b, self.i64(lo), self.i64(hi), lambda b, i: body(i), step, name)

    def slot(self, ty):
        """An alloca in the entry block (allocas inside loops would grow the stack).

        A second builder inserting into the block ``self.b`` is filling would shift
        ``self.b``'s insertion point, so that case uses ``self.b`` itself."""
        if self.b.block is self.entry:
            b = self.b
        else:
            b = ir.IRBuilder(self.entry)
            b.position_at_start(self.entry)
        p = b.alloca(ty)
        p.type = PTR
        if self.b.block is self.entry:
            # the insertion shifted the entry block: the main builder (which always appends)
            # would otherwise put its next instruction before the last one
            self.b.position_at_end(self.entry)
        return p

    def row_ptr(self, name, row):
        kind, ptr, size = self.loc[name]
        if kind == "shared":
            return ptr
        return self.at(ptr, self.b.mul(row, ir.Constant(I64, size)))

    def scalar_at(self, name, row):
        """A scalar operand of a per-sample loop (``row`` selects varying ones)."""
        if not isinstance(name, str):
            return ir.Constant(self.T, float(name))
        return self.b.load(self.row_ptr(name, row), typ=self.T)

    # -- fused elementwise loops -------------------------------------------------------
    def fused(self, instrs, size, rows, stored, bcast):
        """One vector loop over ``rows * size`` elements computing ``instrs``."""
        b, lanes = self.b, self.lanes
        total = b.mul(self.i64(rows), ir.Constant(I64, size))
        shared_scalars = {}
        names = {a for ins in instrs for a in ins.args if isinstance(a, str) and not isinstance(a, bool)}
        mine = {ins.target for ins in instrs}
        for a in sorted(names - mine):
            kind, ptr, s = self.loc[a]
            if kind == "shared" and s == 1:
                v = b.load(ptr, typ=self.T)
                shared_scalars[a] = self._bool(a, self.splat(b, v))
        use_repeat = any(a in self.repeat for a in names)
        step = lanes % size if use_repeat else 0
        head = self.fn.append_basic_block("ew_head")
        body = self.fn.append_basic_block("ew_body")
        done = self.fn.append_basic_block("ew_done")
        pre = b.block
        b.branch(head)
        b.position_at_end(head)
        e = b.phi(I64, "e")
        e.add_incoming(ir.Constant(I64, 0), pre)
        j0 = b.phi(I64, "j0")
        j0.add_incoming(ir.Constant(I64, 0), pre)
        b.cbranch(b.icmp_signed("<", e, total), body, done)
        b.position_at_end(body)
        self._splats = {}
        env = {}

        def operand(a):
            if isinstance(a, bool):
                c = ir.Constant(I1, int(a))
                return ir.Constant(ir.VectorType(I1, lanes), [c] * lanes) if lanes > 1 else c
            if not isinstance(a, str):
                return self.const(a, True)
            if a in env:
                return env[a]
            if a in shared_scalars:
                return shared_scalars[a]
            if a in self.repeat and size > 1:
                ptr = self.at(self.repeat[a], j0)
            elif (a, size) in bcast and size > 1:
                ptr = self.at(self.loc[(a, size)][1], e)
            else:
                ptr = self.at(self.loc[a][1], e)
            v = b.load(ptr, typ=self.VT, align=4 if self.single else 8)
            env[a] = self._bool(a, v)
            return env[a]

        for ins in instrs:
            if ins.op == "powi":
                args = [operand(ins.args[0]), int(ins.args[1])]
            else:
                args = [operand(a) for a in ins.args]
            env[ins.target] = self.apply(b, ins.op, args, True)
            if ins.target in stored:
                v = env[ins.target]
                if ins.op in BOOL_OPS:
                    v = b.uitofp(v, self.VT)
                b.store(v, self.at(self.loc[ins.target][1], e), align=4 if self.single else 8)
        e_next = b.add(e, ir.Constant(I64, lanes))
        if step:
            j1 = b.add(j0, ir.Constant(I64, step))
            j1 = b.select(b.icmp_signed(">=", j1, ir.Constant(I64, size)),
                          b.sub(j1, ir.Constant(I64, size)), j1)
        else:
            j1 = j0
        e.add_incoming(e_next, b.block)
        j0.add_incoming(j1, b.block)
        b.branch(head)
        b.position_at_end(done)
        self._splats = {}

    def _bool(self, name, v):
        ins = self.plan.defs.get(name)
        if ins is not None and ins.op in BOOL_OPS:
            zero = ir.Constant(v.type, None)
            return self.b.fcmp_ordered("!=", v, zero)
        return v

    def broadcast_scalar(self, name, size, rows):
        """Materialize a per-row scalar as ``size`` copies per row (read by a fused loop)."""
        b = self.b
        dst = self.loc[(name, size)][1]

        def row(r):
            v = self.scalar_at(name, r)
            base = b.mul(r, ir.Constant(I64, size))
            self.loop(0, size, lambda j: b.store(v, self.at(dst, b.add(base, j))), name="bj")

        self.loop(0, rows, row, name="br")

    # -- array ops ---------------------------------------------------------------------------
    def array_op(self, ins, rows):
        op, P = ins.op, self.plan
        b = self.b
        dst = self.loc[ins.target][1]
        size = P.size(ins.target)
        if op == "dot":
            return self.dot(ins, rows)
        if op == "transpose":
            (r, c) = P.shape(ins.args[0])

            def row(s):
                src = self.row_ptr(ins.args[0], s)
                out = self.at(dst, b.mul(s, ir.Constant(I64, size)))

                def elem(e):
                    i, j = b.udiv(e, ir.Constant(I64, c)), b.urem(e, ir.Constant(I64, c))
                    v = b.load(self.at(src, e), typ=self.T)
                    b.store(v, self.at(out, b.add(b.mul(j, ir.Constant(I64, r)), i)))

                self.loop(0, r * c, elem, name="trj")

            return self.loop(0, rows, row, name="tr")
        if op in ("sum", "amax"):
            n = P.size(ins.args[0])
            acc = self.slot(self.T)

            def row(s):
                src = self.row_ptr(ins.args[0], s)
                b.store(b.load(src, typ=self.T), acc)

                def elem(k):
                    v, old = b.load(self.at(src, k), typ=self.T), b.load(acc, typ=self.T)
                    b.store(b.fadd(old, v, flags=FASTMATH) if op == "sum" else
                            self.intrinsic(b, "maximum", self.T, [old, v]), acc)

                self.loop(1, n, elem, name=op + "j")
                b.store(b.load(acc, typ=self.T), self.at(dst, s))

            return self.loop(0, rows, row, name=op)
        if op == "broadcast":
            def row(s):
                v = self.scalar_at(ins.args[0], s)
                out = self.at(dst, b.mul(s, ir.Constant(I64, size)))
                self.loop(0, size, lambda j: b.store(v, self.at(out, j)), name="bcj")

            return self.loop(0, rows, row, name="bc")
        if op == "index":
            a, i, j = ins.args
            c = P.shape(a)[1]

            def row(s):
                b.store(b.load(self.at(self.row_ptr(a, s), i * c + j), typ=self.T), self.at(dst, s))

            return self.loop(0, rows, row, name="ix")
        if op == "onehot":
            s_, i, j, r, c = ins.args

            def row(s):
                out = self.at(dst, b.mul(s, ir.Constant(I64, size)))
                zero = ir.Constant(self.T, 0.0)
                self.loop(0, size, lambda k: b.store(zero, self.at(out, k)), name="ohj")
                b.store(self.scalar_at(s_, s), self.at(out, i * c + j))

            return self.loop(0, rows, row, name="oh")
        if op == "eye":
            (r,) = ins.args

            def elem(k):
                diag = b.icmp_signed("==", b.urem(k, ir.Constant(I64, r + 1)), ir.Constant(I64, 0))
                b.store(b.select(diag, ir.Constant(self.T, 1.0), ir.Constant(self.T, 0.0)),
                        self.at(dst, k))

            return self.loop(0, b.mul(self.i64(rows), ir.Constant(I64, r * r)), elem, name="eye")
        raise LoweringError(f"no LLVM lowering for array op {op!r}")

    def dot(self, ins, rows):
        """``op(a) @ op(b)`` per sample: one GEMM over the batch when the batching allows."""
        P, b = self.plan, self.b
        a, bb, ta, tb = ins.args
        (ra, ca), (rb, cb) = P.shape(a), P.shape(bb)
        m, k = (ca, ra) if ta else (ra, ca)
        n = rb if tb else cb
        ka, pa, _ = self.loc[a]
        kb, pb, _ = self.loc[bb]
        out = self.loc[ins.target][1]
        if ka == "row" and kb == "shared" and not ta:
            # per-sample rows of op(a) stacked over the batch: (rows*m, k) @ op(b)
            blas.emit_gemm(b, self.module, self.single, False, tb, b.mul(self.i64(rows), self.i64(m)),
                           n, k, 1.0, pa, ca, pb, cb, 0.0, out, n)
            return
        if ka == "shared" and kb == "row" and n == 1:
            # per-sample column op(b) = row of the batch matrix: X @ op(a)^T
            blas.emit_gemm(b, self.module, self.single, False, not ta, self.i64(rows), m, k, 1.0,
                           pb, k, pa, ca, 0.0, out, m)
            return

        def row(s):
            blas.emit_gemm(b, self.module, self.single, ta, tb, m, n, k, 1.0, self.row_ptr(a, s), ca,
                           self.row_ptr(bb, s), cb, 0.0, self.row_ptr(ins.target, s), n)

        self.loop(0, rows, row, name="dotrow")

    def run(self, steps, rows, stored, bcast):
        for index, step in enumerate(steps):
            if step[0] == "op":
                self.array_op(step[1], rows)
            elif step[0] == "rows":
                _RowLoop(self, index, step[1], rows, stored).emit()
            else:
                _, instrs, size = step
                for key in bcast:
                    if key[1] == size and any(key[0] in i.args for i in instrs):
                        self.broadcast_scalar(key[0], size, rows)
                self.fused(instrs, size, rows, stored, bcast)

    # -- vectors of one sample --------------------------------------------------------------
    def lane_mask(self, valid):
        return ir.Constant(ir.VectorType(I1, self.lanes), [ir.Constant(I1, int(l < valid))
                                                         for l in range(self.lanes)])

    def load_vector(self, ptr, valid, ty=None):
        """``valid`` elements at ``ptr`` as one vector (masked: nothing past them is read)."""
        ty = ty or self.VT
        align = ir.Constant(I32, 4 if ty.element == F32 else 8)
        if valid >= self.lanes:
            return self.b.load(ptr, typ=ty, align=align.constant)
        fn = self.declare(f"llvm.masked.load.v{self.lanes}{ty.element.intrinsic_name}.p0", ty,
                          [PTR, I32, ir.VectorType(I1, self.lanes), ty])
        return self.b.call(fn, [ptr, align, self.lane_mask(valid), ir.Constant(ty, None)])

    def store_vector(self, v, ptr, valid):
        """The first ``valid`` lanes of ``v`` to ``ptr`` (nothing past them is written)."""
        ty = v.type
        align = ir.Constant(I32, 4 if ty.element == F32 else 8)
        if valid >= self.lanes:
            return self.b.store(v, ptr, align=align.constant)
        fn = self.declare(f"llvm.masked.store.v{self.lanes}{ty.element.intrinsic_name}.p0",
                          ir.VoidType(), [ty, PTR, I32, ir.VectorType(I1, self.lanes)])
        return self.b.call(fn, [v, ptr, align, self.lane_mask(valid)])

    def reduce_lanes(self, v, op):
        """Lane 0 of a pairwise tree of ``op`` ("sum" or "amax") over the lanes of ``v``."""
        b, L = self.b, self.lanes
        undef = ir.Constant(v.type, ir.Undefined)
        w = L // 2
        while w >= 1:
            mask = ir.Constant(ir.VectorType(I32, L), [ir.Constant(I32, i + w if i + w < L else i)
                                                       for i in range(L)])
            v = self.combine(v, b.shuffle_vector(v, undef, mask), op)
            w //= 2
        return b.extract_element(v, ir.Constant(I32, 0))

    def combine(self, x, y, op):
        """x + y, or the larger of x, y (a NaN in y is dropped: it reaches the loss anyway
        through the values the maximum is subtracted from)."""
        b = self.b
        if op == "sum":
            return b.fadd(x, y, flags=FASTMATH)
        return b.select(b.fcmp_ordered(">", y, x), y, x)


class _Prepare(_Emitter):
    """``symdiff_prepare(double* theta, T* hoist)``: everything that does not vary."""

    def __init__(self, module, plan, *, single, isa):
        super().__init__(module, plan, "symdiff_prepare", [PTR, PTR], single=single, isa=isa)

    def emit(self):
        P, b = self.plan, self.b
        theta, hoist = self.fn.args
        for name, off in P.hoist.items():
            size = P.size(name)  # one row: a scalar is the same shared or per row
            self.loc[name] = ("shared" if size == 1 else "row", self.at(hoist, off), size)
        at = 0
        for name in P.program.params:
            size = P.size(name)
            dst, src0 = self.loc[name][1], at

            def copy(j, dst=dst, src0=src0):
                v = b.load(self.at(theta, b.add(j, ir.Constant(I64, src0)), F64), typ=F64)
                b.store(b.fptrunc(v, F32) if self.single else v, self.at(dst, j))

            self.loop(0, size, copy, name="theta")
            at += size
        self.run(P._regions(P.hoisted), 1, P.hoist_stored, [])
        for name, off in P.repeat.items():
            size = P.size(name)
            src, dst = self.loc[name][1], self.at(hoist, off)
            reps = -(-(size + self.lanes - 1) // size)
            self.loop(0, reps * size, lambda j, src=src, dst=dst, size=size: b.store(
                b.load(self.at(src, b.urem(j, ir.Constant(I64, size))), typ=self.T), self.at(dst, j)),
                name="rep")
        for (a, ta), (off, k, m, mp) in P.panels.items():
            src, dst, ca = self.loc[a][1], self.at(hoist, off), P.shape(a)[1]

            def column(j, src=src, dst=dst, ca=ca, ta=ta, m=m, mp=mp):
                def elem(i):
                    at = b.add(b.mul(j, ir.Constant(I64, ca)), i) if ta else \
                        b.add(b.mul(i, ir.Constant(I64, ca)), j)
                    b.store(b.load(self.at(src, at), typ=self.T),
                            self.at(dst, b.add(b.mul(j, ir.Constant(I64, mp)), i)))

                self.loop(0, m, elem, name="pni")

            self.loop(0, k, column, name="pnj")
        b.ret_void()


#: flag bits of ``symdiff_tile``: zero the sums first; GEMM accumulators start afresh
#: (``beta = 0``); add the accumulators into the sums at the end
ZERO_SUMS, FRESH_ACC, FLUSH_ACC = 1, 2, 4


class _Tile(_Emitter):
    """``symdiff_tile(T* hoist, T** data, i64 start, i64 end, double* sums, T* scratch,
    i64 flags)``; ``flags`` combines ``ZERO_SUMS``, ``FRESH_ACC``, ``FLUSH_ACC``."""

    NAME = "symdiff_tile"
    ARGS = [PTR, PTR, I64, I64, PTR, PTR, I64]

    def __init__(self, module, plan, *, single, isa):
        super().__init__(module, plan, self.NAME, self.ARGS, single=single, isa=isa)

    def emit(self):
        b = self.b
        hoist, data, start, end, sums, scratch, flags = self.fn.args
        P = self.plan
        with b.if_then(self.flag(flags, ZERO_SUMS)):
            self.loop(0, P.n_flat, lambda i: b.store(ir.Constant(F64, 0.0), self.at(sums, i, F64)),
                      name="zero")
        self.accumulate, self.sums, self.scratch = True, sums, scratch
        self.fresh = self.flag(flags, FRESH_ACC)
        rows = b.sub(end, start)
        self.forward(hoist, data, start, rows, scratch)
        self.reduce(sums, rows, scratch, flags)
        b.ret_void()

    def flag(self, flags, bit):
        return self.b.icmp_unsigned("!=", self.b.and_(flags, ir.Constant(I64, bit)), ir.Constant(I64, 0))

    def forward(self, hoist, data, start, rows, scratch):
        """Every live varying value of samples ``start .. start + rows``."""
        P, b = self.plan, self.b
        for name, off in P.hoist.items():
            self.loc[name] = ("shared", self.at(hoist, off), P.size(name))
        for name, off in P.repeat.items():
            self.repeat[name] = self.at(hoist, off)
        for key, (off, k, m, mp) in P.panels.items():
            self.panel[key] = (self.at(hoist, off), k, m, mp)
        for j, name in enumerate(P.program.data):
            size = P.size(name)
            col = b.load(self.at(data, j, PTR), typ=PTR)
            view = self.at(col, b.mul(start, ir.Constant(I64, size)))
            self.loc[name] = ("row", view, size)
            if name in P.scratch:  # read by a fused loop: copy into a padded buffer
                dst = self.at(scratch, P.scratch[name])
                self.loop(0, b.mul(rows, ir.Constant(I64, size)), lambda e, view=view, dst=dst: b.store(
                    b.load(self.at(view, e), typ=self.T), self.at(dst, e)), name="copy")
                self.loc[name] = ("row", dst, size)
        for name, off in P.scratch.items():
            if isinstance(name, tuple):
                self.loc[name] = ("row", self.at(scratch, off), name[1])
            elif name not in P.program.data:
                self.loc[name] = ("row", self.at(scratch, off), P.size(name))
        self.run(P.regions, rows, P.scratch_stored, P.scalar_bcast)

    def reduce(self, sums, rows, scratch, flags):
        P, b = self.plan, self.b
        fresh = b.select(self.fresh, ir.Constant(self.T, 0.0), ir.Constant(self.T, 1.0))
        for k, terms in enumerate(P.terms):
            base = P.out_offsets[k]
            beta = 1.0 if k in self.acc_started else fresh
            for kind, name, sign in terms:
                if kind == "gemm":
                    x, y, _, _ = P.defs[name].args
                    p, q = P.size(x), P.size(y)
                    blas.emit_gemm(b, self.module, self.single, True, False, p, q, rows, sign,
                                   self.loc[x][1], p, self.loc[y][1], q, beta,
                                   self.at(scratch, P.acc[k]), q)
                    beta = 1.0
                elif kind == "sum":
                    self.column_sum(name, sign, rows, self.at(sums, base, F64))
        with b.if_then(self.flag(flags, FLUSH_ACC)):
            for k, off in P.acc.items():
                acc, base = self.at(scratch, off), P.out_offsets[k]

                def add(i, acc=acc, base=base):
                    v = b.load(self.at(acc, i), typ=self.T)
                    ptr = self.at(sums, b.add(i, ir.Constant(I64, base)), F64)
                    b.store(b.fadd(b.load(ptr, typ=F64), b.fpext(v, F64) if self.single else v), ptr)

                self.loop(0, P.size(P.program.outputs[k]), add, name="flush")

    def column_sum(self, name, sign, rows, out):
        """out[j] += sign * sum over rows of name[row, j], in double."""
        b, P = self.b, self.plan
        size = P.size(name)
        src = self.loc[name][1]

        def row(s):
            base = b.mul(s, ir.Constant(I64, size))

            def col(j):
                v = b.load(self.at(src, b.add(base, j)), typ=self.T)
                v = b.fpext(v, F64) if self.single else v
                ptr = self.at(out, j, F64)
                v = b.fneg(v) if sign < 0 else v
                b.store(b.fadd(b.load(ptr, typ=F64), v), ptr)

            self.loop(0, size, col, name="csj")

        self.loop(0, rows, row, name="cs")


class _MapTile(_Tile):
    """``symdiff_map_tile(T* hoist, T** data, i64 start, i64 end, T* out, T* scratch)``:
    output 0 of samples ``start .. end`` into rows ``start .. end`` of ``out``."""

    NAME = "symdiff_map_tile"
    ARGS = [PTR, PTR, I64, I64, PTR, PTR]

    def emit(self):
        P, b = self.plan, self.b
        hoist, data, start, end, out, scratch = self.fn.args
        rows = b.sub(end, start)
        self.forward(hoist, data, start, rows, scratch)
        name = P.program.outputs[0]
        if isinstance(name, str) and name in P.varying:
            size = P.size(name)
            src = self.loc[name][1]
            dst = self.at(out, b.mul(start, ir.Constant(I64, size)))
            self.loop(0, b.mul(rows, ir.Constant(I64, size)), lambda e: b.store(
                b.load(self.at(src, e), typ=self.T), self.at(dst, e)), name="out")
        b.ret_void()
