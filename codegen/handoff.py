"""Splitting a short kernel call over cores: a hand-off of microseconds, not tens of them.

A call of a fraction of a millisecond (an MLP 64-32-10 on 1,797 samples: ~210 µs on one
core) gained little from a second core through a thread pool: measured on a 2-core VM,
the helper started its slot 40-50 µs after the caller and the caller saw the end of it
30 µs late, because every hand-off between Python threads goes through the GIL, and
waking a thread blocked on it is an inter-processor interrupt (tens of µs in a VM).

So the slots of a call are handed over below Python. A :class:`Team`'s helper threads
enter a native loop (``symdiff_team_serve``, holding no GIL) that watches a sequence
number; when the caller posts a call, each helper claims slots from a shared counter
and runs their tiles by calling the kernel's tile function itself, and the caller,
which claims slots the same way, waits for the last one in a native loop too. Nothing
on that path takes the GIL or a lock. A helper that hears of no call for
``SPIN_CYCLES`` (about 0.3 ms) returns to Python and blocks, so an idle process does
not keep a core busy; OpenMP runtimes do the same (``GOMP_SPINCOUNT``).

Both array kernels use it: a loss-and-gradient call's slots (groups of tiles summing into a
row each) and a model's per-sample outputs (a slot per tile, writing its rows).
Which thread runs a slot never changes what it computes: each slot accumulates into a
row of sums of its own, its tiles in order, with the scratch area of the thread that
runs it. The claim counter carries the call's sequence number in its high half, so a
helper that arrives late for one call cannot claim a slot of the next, and every
address a claimed slot uses lives until the caller has seen the slot done. All of the
shared state is one array the team owns for the life of the process.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import threading
import time

import numpy as np

#: how long a waiting thread watches in the native loop before it blocks (TSC cycles)
SPIN_CYCLES = 1_000_000
#: and at most this many polls (for where the cycle counter does not count)
SPIN_POLLS = 200_000

# the team's shared words (int64 indices; counters on cache lines of their own)
GO, CLAIM, DONE = 0, 8, 16
FN, HOIST, DATA, N_SLOTS, SLOT_TABLE, TILE_TABLE, SCRATCH_TABLE, N_THREADS = range(24, 32)
_WORDS = 40

_IR = r"""
declare i64 @llvm.readcyclecounter()
%(pause_decl)s

define internal i64 @word(i64* %%d, i64 %%k) alwaysinline {
  %%p = getelementptr i64, i64* %%d, i64 %%k
  %%v = load i64, i64* %%p
  ret i64 %%v
}

; run the slots of call %%seq that this thread can claim
define void @symdiff_team_work(i64 %%addr, i64 %%seq, i64 %%thread) {
entry:
  %%d = inttoptr i64 %%addr to i64*
  %%claim = getelementptr i64, i64* %%d, i64 %(CLAIM)d
  %%done = getelementptr i64, i64* %%d, i64 %(DONE)d
  %%seq31 = and i64 %%seq, 2147483647
  br label %%grab
grab:
  %%cur = load atomic i64, i64* %%claim acquire, align 8
  %%cseq = lshr i64 %%cur, 32
  %%same = icmp eq i64 %%cseq, %%seq31
  br i1 %%same, label %%count, label %%exit
count:
  %%slot = and i64 %%cur, 4294967295
  %%ns = call i64 @word(i64* %%d, i64 %(N_SLOTS)d)
  %%nt = call i64 @word(i64* %%d, i64 %(N_THREADS)d)
  %%more = icmp ult i64 %%slot, %%ns
  %%mine = icmp ult i64 %%thread, %%nt
  %%go = and i1 %%more, %%mine
  br i1 %%go, label %%cas, label %%exit
cas:
  %%next = add i64 %%cur, 1
  %%res = cmpxchg i64* %%claim, i64 %%cur, i64 %%next acq_rel acquire
  %%ok = extractvalue {i64, i1} %%res, 1
  br i1 %%ok, label %%run, label %%grab
run:
  %%fn_i = call i64 @word(i64* %%d, i64 %(FN)d)
  %%fn = inttoptr i64 %%fn_i to void (i64, i64, i64, i64, i64, i64, i64)*
  %%h = call i64 @word(i64* %%d, i64 %(HOIST)d)
  %%p = call i64 @word(i64* %%d, i64 %(DATA)d)
  %%st_i = call i64 @word(i64* %%d, i64 %(SLOT_TABLE)d)
  %%tt_i = call i64 @word(i64* %%d, i64 %(TILE_TABLE)d)
  %%sc_i = call i64 @word(i64* %%d, i64 %(SCRATCH_TABLE)d)
  %%st = inttoptr i64 %%st_i to i64*
  %%tt = inttoptr i64 %%tt_i to i64*
  %%sc = inttoptr i64 %%sc_i to i64*
  %%scratch = call i64 @word(i64* %%sc, i64 %%thread)
  %%two_s = shl i64 %%slot, 1
  %%first = call i64 @word(i64* %%st, i64 %%two_s)
  %%two_s1 = add i64 %%two_s, 1
  %%last = call i64 @word(i64* %%st, i64 %%two_s1)
  br label %%tiles
tiles:
  %%t = phi i64 [%%first, %%run], [%%t1, %%call]
  %%left = icmp ult i64 %%t, %%last
  br i1 %%left, label %%call, label %%finished
call:
  %%b = shl i64 %%t, 2
  %%start = call i64 @word(i64* %%tt, i64 %%b)
  %%b1 = add i64 %%b, 1
  %%end = call i64 @word(i64* %%tt, i64 %%b1)
  %%b2 = add i64 %%b, 2
  %%row = call i64 @word(i64* %%tt, i64 %%b2)
  %%b3 = add i64 %%b, 3
  %%flags = call i64 @word(i64* %%tt, i64 %%b3)
  call void %%fn(i64 %%h, i64 %%p, i64 %%start, i64 %%end, i64 %%row, i64 %%scratch, i64 %%flags)
  %%t1 = add i64 %%t, 1
  br label %%tiles
finished:
  %%old = atomicrmw add i64* %%done, i64 1 release
  br label %%grab
exit:
  ret void
}

; wait until the word at %%flag is >= %%target, or the budget is spent; its last value
define i64 @symdiff_spin_until(i64 %%flag_addr, i64 %%target, i64 %%cycles, i64 %%polls) {
entry:
  %%flag = inttoptr i64 %%flag_addr to i64*
  %%t0 = call i64 @llvm.readcyclecounter()
  br label %%poll
poll:
  %%i = phi i64 [0, %%entry], [%%next, %%wait]
  %%v = load atomic i64, i64* %%flag acquire, align 8
  %%reached = icmp sge i64 %%v, %%target
  br i1 %%reached, label %%done, label %%wait
wait:
  %(pause_call)s
  %%next = add i64 %%i, 1
  %%now = call i64 @llvm.readcyclecounter()
  %%spent = sub i64 %%now, %%t0
  %%late = icmp uge i64 %%spent, %%cycles
  %%many = icmp uge i64 %%next, %%polls
  %%stop = or i1 %%late, %%many
  br i1 %%stop, label %%done, label %%poll
done:
  %%last = load atomic i64, i64* %%flag acquire, align 8
  ret i64 %%last
}

; post call %%seq: every word written before (by NumPy stores) is seen by whoever sees GO
define void @symdiff_team_post(i64 %%addr, i64 %%seq) {
  %%go = inttoptr i64 %%addr to i64*
  fence seq_cst
  store atomic i64 %%seq, i64* %%go release, align 8
  ret void
}

; a helper: run every call posted after %%seen until none comes for the budget; the last seen
define i64 @symdiff_team_serve(i64 %%addr, i64 %%seen, i64 %%thread, i64 %%cycles, i64 %%polls) {
entry:
  br label %%wait
wait:
  %%s = phi i64 [%%seen, %%entry], [%%seq, %%work]
  %%target = add i64 %%s, 1
  %%seq = call i64 @symdiff_spin_until(i64 %%addr, i64 %%target, i64 %%cycles, i64 %%polls)
  %%new = icmp sgt i64 %%seq, %%s
  br i1 %%new, label %%work, label %%idle
work:
  call void @symdiff_team_work(i64 %%addr, i64 %%seq, i64 %%thread)
  br label %%wait
idle:
  ret i64 %%s
}
"""

_native = None
_native_lock = threading.Lock()


def _functions():
    """(work, spin_until, serve, post) as ctypes functions, compiled once per process."""
    global _native
    with _native_lock:
        if _native is None:
            from .jit import NativeLibrary, optimize_and_emit
            from .target import host_target
            x86 = host_target().triple.startswith(("x86_64", "i686", "i386"))
            ir = _IR % {"pause_decl": "declare void @llvm.x86.sse2.pause()" if x86 else "",
                        "pause_call": "call void @llvm.x86.sse2.pause()" if x86 else "",
                        "CLAIM": CLAIM, "DONE": DONE, "FN": FN, "HOIST": HOIST, "DATA": DATA,
                        "N_SLOTS": N_SLOTS, "SLOT_TABLE": SLOT_TABLE, "TILE_TABLE": TILE_TABLE,
                        "SCRATCH_TABLE": SCRATCH_TABLE, "N_THREADS": N_THREADS}
            names = ["symdiff_team_work", "symdiff_spin_until", "symdiff_team_serve",
                     "symdiff_team_post"]
            lib = NativeLibrary(optimize_and_emit(ir, opt_level=2).object_code, names)
            i64 = ctypes.c_int64
            work = ctypes.CFUNCTYPE(None, i64, i64, i64)(lib.addresses[names[0]])
            spin = ctypes.CFUNCTYPE(i64, i64, i64, i64, i64)(lib.addresses[names[1]])
            serve = ctypes.CFUNCTYPE(i64, i64, i64, i64, i64, i64)(lib.addresses[names[2]])
            post = ctypes.CFUNCTYPE(None, i64, i64)(lib.addresses[names[3]])
            # the machine code must outlive every helper thread: kept for the process
            _native = (work, spin, serve, post, lib)
        return _native


class Team:
    """``helpers`` native helper threads; :meth:`run_slots` runs one call at a time."""

    def __init__(self, helpers: int):
        self.work, self.spin, self.serve, self.post, _ = _functions()
        self.words = np.zeros(_WORDS, np.int64)
        self.addr = self.words.ctypes.data
        self.seq = 0
        self.busy = threading.Lock()
        self.wake = threading.Condition()
        self.sleeping = 0
        self.stopping = False
        self.pid = os.getpid()
        self.helpers = [threading.Thread(target=self._help, args=(k + 1,), daemon=True,
                                         name=f"symdiff-team-{k + 1}") for k in range(helpers)]
        for t in self.helpers:
            t.start()

    def run_slots(self, fn, hoist, data, slot_table, tile_table, scratch_table, threads) -> bool:
        """Run every slot: slot s is tiles ``slot_table[2s] .. slot_table[2s+1] - 1``, tile t
        ``fn(hoist, data, start, end, row, scratch[thread], flags)`` with (start, end, row,
        flags) ``= tile_table[4t:4t+4]``. The tables are int64 arrays the caller keeps
        alive until this returns. False (nothing run) if another thread's call is running."""
        if not self.busy.acquire(blocking=False):
            return False
        try:
            w, n_slots = self.words, len(slot_table) // 2
            self.seq += 1
            seq = self.seq
            w[FN], w[HOIST], w[DATA], w[N_SLOTS] = fn, hoist, data, n_slots
            w[SLOT_TABLE], w[TILE_TABLE] = slot_table.ctypes.data, tile_table.ctypes.data
            w[SCRATCH_TABLE] = scratch_table.ctypes.data
            w[N_THREADS] = min(threads, len(scratch_table))
            w[DONE] = 0
            w[CLAIM] = (seq & 0x7FFFFFFF) << 32  # the claim counter's half of seq
            self.post(self.addr + 8 * GO, seq)  # last: who sees it sees the words above
            if self.sleeping:
                with self.wake:
                    self.wake.notify_all()
            self.work(self.addr, seq, 0)
            done_addr = self.addr + 8 * DONE
            while self.spin(done_addr, n_slots, SPIN_CYCLES, SPIN_POLLS) < n_slots:
                time.sleep(0)  # a helper descheduled inside a slot it claimed: let it run
            return True
        finally:
            self.busy.release()

    def _help(self, index):
        seen = 0
        while True:
            seen = self.serve(self.addr, seen, index, SPIN_CYCLES, SPIN_POLLS)
            with self.wake:
                self.sleeping += 1
                while self.words[GO] <= seen and not self.stopping:
                    self.wake.wait()
                self.sleeping -= 1
            if self.stopping:
                return

    def stop(self):
        """End the helpers and wait until they have left the native loop (at exit: before
        the interpreter tears down what they would still be running)."""
        with self.wake:
            self.stopping = True
            self.words[CLAIM] = 0  # a helper still serving claims nothing
            self.words[GO] = np.iinfo(np.int64).max // 2
            self.wake.notify_all()
        for t in self.helpers:
            t.join(timeout=1.0)


_team = None
_team_lock = threading.Lock()
_unavailable = False


def team(helpers: int):
    """The process's team, with at least ``helpers`` helper threads (made anew after fork);
    None where the native team cannot be built (the caller then runs its slots itself)."""
    global _team, _unavailable
    with _team_lock:
        if _unavailable:
            return None
        if _team is None or _team.pid != os.getpid() or len(_team.helpers) < helpers:
            if _team is not None and _team.pid == os.getpid():
                _team.stop()
            try:
                _team = Team(helpers)
            except Exception as exc:  # no JIT for it here: one thread is still right
                import warnings

                from symdiff.errors import SymdiffWarning
                _unavailable = True
                warnings.warn(f"array kernels run their short calls on one thread: the native "
                              f"team could not be built ({exc})", SymdiffWarning, stacklevel=3)
                return None
        return _team


@atexit.register
def _stop_team():
    if _team is not None and _team.pid == os.getpid():
        _team.stop()



def run_slots(fn, hoist, data, slot_table, tile_table, scratch_table, threads) -> bool:
    """:meth:`Team.run_slots` on the process's team, with as many threads as there are
    slots, scratch areas and cores (at most ``threads``). False when it ran nothing (no
    team here, or another thread's call is running): the caller runs the slots itself."""
    from .kernel import available_cores
    threads = min(threads, len(slot_table) // 2, len(scratch_table), available_cores())
    if threads < 2:
        return False
    t = team(threads - 1)
    return t is not None and t.run_slots(fn, hoist, data, slot_table, tile_table, scratch_table,
                                         threads)
