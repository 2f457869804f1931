"""guard's Python heap census: what holds the memory, and through which reference.

guard(1) puts this file and a sitecustomize.py on the job's PYTHONPATH. That hook registers a
handler for one real-time signal (only when nothing else handles it) and costs nothing more until
guard sends the signal, at the warning threshold or at the cap. The handler imports this module
and calls census(): the live objects counted by type (count and shallow size), the objects the
collector does not track counted too (str, int, bytes, and the small dicts and tuples of plain
values that rows and records are made of, reached through the tracked objects that hold them,
each counted once), and for the largest types a retention path from sampled instances up to a
root (a local of a live frame, a module global, a class attribute). The result goes to guard as
one JSON document over guard's socket; nothing is written to disk.

It talks to guard over one connection: guard says how it is to run when it accepts (the job held
at its cap, or running on at a warning; its memory budget; the time left), and closing its end
means it gave up. Its own memory is bounded: 8 bytes per tracked object (the list gc.get_objects()
returns) plus what it samples; it never materialises the referents of many objects at once (a
list of a million items is walked, not copied), and between slices of work it checks the
process's peak RSS against the budget, stopping with what it has when the budget is spent. In a
held job it keeps the GIL throughout (and makes no call that would release it); in a running job
it lets the other threads have it between slices and stops, sending nothing, as soon as guard
gives up. It never raises into the program (KeyboardInterrupt and SystemExit excepted) and stops
at its deadline, sending what it has.
"""

import gc
import json
import os
import resource
import select
import socket
import sys
import time
from collections import Counter
from itertools import chain, compress, filterfalse, islice, repeat
from math import log as _log
from operator import gt, is_, le

FORMAT = "guard-pyheap/1"
TOP = 15  # types listed, by size and by count
PATH_TYPES = 3  # types that get retention paths
SAMPLES = 3  # instances traced per type (an odd number: a transient one is outvoted)
KEEP = 8  # untracked instances kept per type as candidates for tracing
HEAVY = 3  # types of a slab (the most bytes) that offer KEEP candidates from it, not 3
MAX_DEPTH = 40  # steps up from an instance
BEAM = 2  # candidate referrers kept per sample at each step
CHUNK = 20000  # tracked objects per slice of the histogram
SLAB = 32768  # untracked referents taken at a time
MAX_SHARED = 65536  # distinct shared untracked objects remembered (so as to count each once)
NESTING = 6  # levels of untracked containers (a tuple of tuples) walked down
BOX_GROUP = 4096  # untracked containers walked into at a time
MAX_REFERRERS = 20000  # referrers examined per step
MAX_SCAN = 100000  # container items searched for the key that holds an object
DEFAULT_BUDGET = 32 << 20
GARBAGE = "(a cycle nothing else refers to: garbage)"
TOP_LINES = 10  # tracemalloc's lines reported
COUNTING = 0.6  # of the census's time, at most, for counting (the rest for the paths)

_busy = [False]
_again = [False]
# How long a slice of work may hold the GIL in a running job (a census at the warning).
SLICE = 0.05
WALK_REF_S = 15e-9  # what one reference costs gc.get_referrers, a little more than measured


def census(sock_name, window_ms, frame=None):
    """Count, trace and send; called from the signal handler in the main thread. A signal that
    comes while a census runs (guard gave up on it and asks again, at the cap) makes this one
    stop at its next check and a new one start."""
    if _busy[0]:
        _again[0] = True
        return
    _busy[0] = True
    try:
        while True:
            _again[0] = False
            _once(sock_name, window_ms, frame)
            if not _again[0]:
                break
    finally:
        _busy[0] = False


def _once(sock_name, window_ms, frame):
    """One census, over one connection to guard: guard says how (held or running, the budget,
    the time left) when it accepts; closing its end means it gave up, and the census stops."""
    t0 = time.monotonic()
    conn = _connect(sock_name)
    if conn is None:
        return
    try:
        how = _terms(conn, window_ms)
        if how is None:
            return
        live, budget, window_ms = how
        try:
            result = _measure(conn, frame, live, budget, t0 + max(window_ms, 100) / 1000.0 * 0.8)
            if result is not None:
                _answer(conn, result)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: B036 - guard learns why, the program goes on
            _answer_error(conn, e)
    finally:
        conn.close()


def _answer_error(conn, e):
    """Tell guard why the census failed outside its measuring (a MemoryError while answering, at
    the cap): a document built by hand, as the failure may have been json's."""
    try:
        why = "%s: %s" % (type(e).__name__, str(e)[:200])
        why = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in why)
        conn.sendall(('{"format":"%s","error":"%s"}' % (FORMAT, why)).encode("ascii"))
        conn.shutdown(socket.SHUT_WR)
    except BaseException:  # noqa: B036 - nothing more can be said
        pass


def _measure(conn, frame, live, budget, deadline):
    """The census itself, under the collector and the GIL as the mode wants them; None when guard
    gave up on it (nothing is sent, nothing is kept)."""
    t0 = time.monotonic()
    mem0 = _memory()
    gc_was = gc.isenabled()
    switch = sys.getswitchinterval()
    result = {"format": FORMAT}
    c = None
    try:
        gc.disable()
        if not live:
            sys.setswitchinterval(60.0)  # the job is held: its other threads wait
        c = _Census(deadline, frame, budget, mem0[0], conn, live)
        result.update(c.run())
    except _GaveUp:
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: B036 - a census must never end the program
        result["error"] = "%s: %s" % (type(e).__name__, str(e)[:200])
    finally:
        if c is not None:
            c.drop()
        c = None
        sys.setswitchinterval(switch)
        if gc_was:
            gc.enable()
    mem1 = _memory()
    result["python"] = "%d.%d.%d" % sys.version_info[:3]
    result["implementation"] = sys.implementation.name
    result["pid"] = _pid()
    result["duration_ms"] = round((time.monotonic() - t0) * 1000.0, 3)
    result["rss_before_bytes"] = mem0[0]
    result["rss_after_bytes"] = mem1[0]
    result["hwm_growth_bytes"] = max(0, mem1[1] - mem0[1])
    result["budget_bytes"] = budget
    result["live"] = live
    result["gc"] = _gc_state(gc_was)
    return result


def _gc_state(enabled):
    """The collector as the program left it: on or off (gc.disable()), its thresholds, the
    allocations counted towards the next collection of each generation, and gc.garbage."""
    try:
        return {"enabled": bool(enabled), "thresholds": list(gc.get_threshold()),
                "counts": list(gc.get_count()), "garbage": len(gc.garbage)}
    except Exception:
        return None


class _GaveUp(Exception):
    """guard closed its end: it no longer waits for this census."""


def _connect(sock_name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect("\0" + sock_name)
        return s
    except OSError:
        s.close()
        return None


def _terms(conn, window_ms):
    """guard's first line: 'guard-pyheap/1 live=0|1 budget=BYTES window_ms=MS'. None when it
    does not come within a second or does not parse (then there is no census)."""
    data = b""
    try:
        while not data.endswith(b"\n") and len(data) < 256:
            b = conn.recv(256 - len(data))
            if not b:
                return None
            data += b
    except OSError:
        return None
    words = data.decode("ascii", "replace").split()
    if not words or words[0] != FORMAT:
        return None
    kv = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    try:
        return (kv.get("live") == "1", int(kv.get("budget", DEFAULT_BUDGET)),
                int(kv.get("window_ms", window_ms)))
    except ValueError:
        return None


def _gave_up(conn):
    """Whether guard closed its end (the census is no longer wanted)."""
    try:
        readable = select.select([conn], [], [], 0)[0]
        if not readable:
            return False
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except OSError:
        return True


def _answer(conn, result):
    data = json.dumps(result, separators=(",", ":"), default=str).encode("utf-8", "replace")
    try:
        conn.settimeout(2.0)
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _pid():
    return os.getpid()


def _memory():
    """(VmRSS, VmHWM) in bytes, from /proc/self/status."""
    rss = hwm = 0
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return rss, hwm


def _type_name(t):
    try:
        mod = t.__module__
        name = t.__qualname__
    except Exception:
        return "?"
    if mod in ("builtins", "__builtin__") or not isinstance(mod, str):
        return str(name)
    return "%s.%s" % (mod, name)


def _short_type(t):
    try:
        return str(t.__qualname__)
    except Exception:
        return "?"


def _code_where(code, line):
    name = getattr(code, "co_qualname", None) or code.co_name
    fname = code.co_filename.rsplit("/", 1)[-1]
    return "%s (%s:%s)" % (name, fname, line)


def _key_text(k):
    if isinstance(k, str) and len(k) <= 40 and (k.isidentifier() or k.replace("-", "_").replace(".", "_").isidentifier()):
        return "'%s'" % k
    if isinstance(k, int) and not isinstance(k, bool) and abs(k) < 10**12:
        return str(k)
    return "\u2026"


def _referents(o):
    """What `o` refers to, as an iterator: the built-in containers are walked in place (a list
    of a million items is not copied), anything else asked through gc.get_referents."""
    t = type(o)
    if t is list or t is tuple or t is set or t is frozenset:
        return iter(o)
    if t is dict:
        return chain(o.keys(), o.values())
    try:
        return iter(gc.get_referents(o))
    except Exception:
        return iter(())


def _in_tuples(group):
    return chain.from_iterable(group)


def _in_dicts(group):
    return chain(chain.from_iterable(map(dict.keys, group)),
                 chain.from_iterable(map(dict.values, group)))


_GC_HEADER = sys.getsizeof(()) - ().__sizeof__()


class _Sizer(object):
    """Shallow sizes by type. A type whose instances all have one size (no items, the default
    __sizeof__) is sized once; a __sizeof__ written in Python (pandas' deep one, which counts the
    arrays the object holds, themselves counted on their own) is replaced by object.__sizeof__;
    the rest (list, dict, str, int, bytes, numpy arrays: their own buffers) by sys.getsizeof."""

    def __init__(self):
        self.fixed = {}  # type -> size of each instance
        self.variable = set()

    def learn(self, t, sample):
        if t in self.fixed or t in self.variable:
            return
        try:
            own = getattr(t, "__sizeof__", None)
            python_level = own is not None and type(own).__name__ == "function"
            header = _GC_HEADER if gc.is_tracked(sample) or t.__flags__ & (1 << 14) else 0
            if python_level:
                self.fixed[t] = object.__sizeof__(sample) + header
            elif own is object.__sizeof__ and t.__itemsize__ == 0:
                self.fixed[t] = sys.getsizeof(sample, 0)
            else:
                self.variable.add(t)
        except Exception:
            self.variable.add(t)

    def add(self, objs, types, counts, sizes):
        """Count and size `objs` (whose types are `types`) into counts and sizes."""
        kinds = Counter(types)
        counts.update(kinds)
        var = []
        for t, n in kinds.items():
            if t not in self.fixed and t not in self.variable:
                # One sample of the type decides how it is sized.
                self.learn(t, objs[types.index(t)])
            size = self.fixed.get(t)
            if size is not None:
                sizes[t] = sizes.get(t, 0) + size * n
            else:
                var.append(t)
        if not var:
            return
        header = self.header
        if len(var) == 1 and len(kinds) == 1:
            t = var[0]
            sizes[t] = sizes.get(t, 0) + sum(map(t.__sizeof__, objs)) + header(t) * len(objs)
            return
        if len(var) <= 3:
            for t in var:
                part = list(compress(objs, map(is_, types, repeat(t))))
                sizes[t] = sizes.get(t, 0) + sum(map(t.__sizeof__, part)) + header(t) * len(part)
            return
        getsizeof = sys.getsizeof
        is_var = frozenset(var).__contains__
        picked = list(compress(objs, map(is_var, types)))
        get = sizes.get
        for t, s in zip(map(type, picked), map(getsizeof, picked, repeat(0))):
            sizes[t] = get(t, 0) + s

    @staticmethod
    def header(t):
        """What sys.getsizeof adds to __sizeof__ for an instance of `t`: the collector's header,
        for a type that can be tracked."""
        return _GC_HEADER if t.__flags__ & (1 << 14) else 0


class _Census(object):
    def __init__(self, deadline, frame, budget, rss0, conn=None, live=False):
        self.deadline = deadline
        # Counting may take COUNTING of the time: what holds the memory (the paths) is worth
        # more on the first screen than the last types of a complete count.
        now = time.monotonic()
        self.until = now + (deadline - now) * COUNTING
        self.conn = conn
        self.live = live
        self.frame = frame
        self.budget = max(int(budget), 4 << 20)
        self.rss0 = rss0
        self.complete = True
        self.notes = []
        self.own = set()
        self.holder = self.mine({})
        self.sizer = _Sizer()
        self.kept = {}  # untracked type -> up to KEEP instances, candidates for tracing
        self.keys = {}  # untracked type -> their reservoir keys (see keep)
        self.rng = 0x6775617264  # see uniform
        self.shared = self.mine(set())  # shared untracked objects counted
        self.shared_ids = set()  # the ids of unhashable ones
        self.own_files = {__file__, __file__.rsplit(".", 1)[0] + ".py"}
        try:
            self.own_files.add(sys.modules["sitecustomize"].__file__)
        except Exception:
            pass

    def late(self):
        return time.monotonic() > self.until

    def spent(self):
        """The census's own memory so far: the process's peak RSS now against its RSS when the
        census began (getrusage, which keeps the GIL: reading /proc would let the job's other
        threads run in a held job). When the process had been larger before, this counts more
        than the census took, and it stops early."""
        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self.rss0)

    def drop(self):
        """Let go of everything the census holds, at once (not when the handler's frame goes)."""
        for name in ("objs", "kept", "keys", "holder", "shared", "shared_ids", "roots", "module_dicts",
                     "own", "frame", "sizer"):
            self.__dict__.pop(name, None)

    def check(self, what):
        """Between slices of work: guard gave up (stop now, send nothing), past the deadline or
        the budget (stop here, with a note). In a running job, let its other threads have the
        GIL a moment."""
        if self.live:
            # Both let the job's other threads have the GIL; in a held job nothing may (guard
            # gives up on a held job's census only to kill the job).
            if self.conn is not None and _gave_up(self.conn):
                raise _GaveUp()
            time.sleep(0)
        if self.late():
            self.complete = False
            self.notes.append(
                "%s: stopped at the deadline%s"
                % (what, "" if self.until == self.deadline else ", leaving time for the paths"))
            return False
        if self.spent() > self.budget:
            self.complete = False
            self.notes.append(
                "%s: stopped at the census's memory budget (%d MiB)" % (what, self.budget >> 20))
            return False
        return True

    def mine(self, obj):
        self.own.add(id(obj))
        return obj

    def run(self):
        t = time.monotonic()
        phases = {}

        def phase(name):
            now = time.monotonic()
            phases[name] = round((now - phases.get("_t", t)) * 1000.0, 1)
            phases["_t"] = now

        # Listing the objects is one call that holds the GIL, about 15 ms a million tracked
        # objects: the one step of a census in a running job that can pass SLICE (past ~3
        # million tracked objects). Rows and strings are not tracked and do not count.
        t_list = time.monotonic()
        objs = self.mine(gc.get_objects())
        self.list_s = time.monotonic() - t_list
        self.objs = objs
        out = {"objects": len(objs), "phases_ms": phases}
        phase("list")
        if self.spent() > self.budget:
            # The list alone (8 bytes an object) is past the budget: give its memory back.
            n = len(objs)
            del objs[:]
            raise _OverBudgetError(n, self.budget)
        counts, sizes = self.histogram(objs)
        phase("histogram")
        untracked = self.untracked(objs, counts, sizes)
        phase("untracked")
        self.untracked_done = self.complete
        self.untracked_count = untracked
        out["untracked"] = untracked
        out["total_bytes"] = sum(sizes.values())
        by_size = sorted(sizes.items(), key=lambda kv: -kv[1])[:TOP]
        by_count = sorted(counts.items(), key=lambda kv: -kv[1])[:TOP]
        row = lambda t: {"type": _type_name(t), "count": counts[t], "bytes": sizes.get(t, 0)}
        out["by_size"] = [row(t) for t, _ in by_size]
        out["by_count"] = [row(t) for t, _ in by_count]
        out["paths"] = []
        self.until = self.deadline
        if self.check("paths"):
            self.roots = self.find_roots()
            out["paths"] = self.paths([t for t, _ in by_size[:PATH_TYPES]], counts)
        phase("paths")
        if not self.live and not self.late():
            allocated = self.allocated()
            if allocated is not None:
                out["allocated"] = allocated
            phase("allocated")
        del phases["_t"]
        out["complete"] = self.complete
        if self.notes:
            out["notes"] = self.notes[:10]
        return out

    def histogram(self, objs):
        counts = Counter()
        sizes = {}
        for i in range(0, len(objs), CHUNK):
            if not self.check("histogram (%d of %d objects counted)" % (i, len(objs))):
                # What is counted so far is a sample of the heap, in the order the collector keeps it.
                break
            chunk = objs[i : i + CHUNK]
            try:
                self.sizer.add(chunk, list(map(type, chunk)), counts, sizes)
            except Exception:
                # A __sizeof__ that raises: that object counts 0, the rest of the chunk is redone.
                for o in chunk:
                    t = type(o)
                    counts[t] += 1
                    try:
                        s = sys.getsizeof(o, 0)
                    except Exception:
                        s = 0
                    sizes[t] = sizes.get(t, 0) + s
        return counts, sizes

    def untracked(self, objs, counts, sizes):
        """Count the objects the collector does not track, each once: found among the referents
        of the tracked ones, and inside the untracked dicts and tuples found there (a row of
        plain values is untracked), NESTING levels down. An object held once (its reference
        count says so) is counted as it comes; a shared one is remembered. The tracked objects
        are read CHUNK at a time; a dict or set the job's threads change while it is read (a
        census at the warning) costs the rest of its chunk, said in a note. Returns how many
        were counted."""
        tracked = gc.is_tracked
        own = self.own

        def referents(o):
            return iter(()) if id(o) in own else _referents(o)

        done = changed = 0
        self.direct_refs = 0
        for i in range(0, len(objs), CHUNK):
            if not self.check("untracked objects (%d counted)" % done):
                break
            stream = filterfalse(tracked, chain.from_iterable(map(referents, objs[i : i + CHUNK])))
            try:
                while True:
                    slab = list(islice(stream, SLAB))
                    if not slab:
                        break
                    self.direct_refs += len(slab)
                    done += self.count_slab(slab, counts, sizes, 0)
                    if len(slab) == SLAB and not self.check("untracked objects"):
                        return done
                    slab = None
            except RuntimeError:
                changed += 1
            stream = None
        if changed:
            self.complete = False
            self.notes.append(
                "untracked objects: %d containers changed while they were read" % changed)
        return done

    def count_slab(self, slab, counts, sizes, depth, boxes=None):
        """Count the new objects of `slab` (found inside `boxes`, untracked dicts and tuples,
        below the first level), then walk down into the untracked dicts and tuples among them,
        BOX_GROUP at a time."""
        fresh = self.fresh(slab)
        slab = None
        if not fresh:
            return 0
        types = list(map(type, fresh))
        before = dict((t, sizes.get(t, 0)) for t in set(types))
        self.sizer.add(fresh, types, counts, sizes)
        added = dict((t, sizes.get(t, 0) - b) for t, b in before.items())
        before = None
        self.keep(fresh, types, boxes, added)
        n = len(fresh)
        if depth >= NESTING:
            return n
        tuples = list(compress(fresh, map(is_, types, repeat(tuple))))
        dicts = list(compress(fresh, map(is_, types, repeat(dict))))
        fresh = types = None
        tracked = gc.is_tracked
        for inner, walk in ((tuples, _in_tuples), (dicts, _in_dicts)):
            for i in range(0, len(inner), BOX_GROUP):
                if i and not self.check("untracked objects"):
                    break
                group = inner[i : i + BOX_GROUP]
                try:
                    part = list(filterfalse(tracked, walk(group)))
                except RuntimeError:
                    # A row the job's threads changed while it was read (at the warning).
                    continue
                if part:
                    n += self.count_slab(part, counts, sizes, depth + 1, group)
        return n

    def fresh(self, slab):
        """The objects of `slab` not counted before. One held by the container it was found in
        alone has a reference count of 3 here (that container, the slab, the call's argument);
        the others are shared and remembered, at most MAX_SHARED of them: by value where they
        are hashable (str, int, tuples of them: four times faster than by id, and two equal
        shared strings counted as one cost less than the error), else by id."""
        rc = list(map(sys.getrefcount, slab))
        out = list(compress(slab, map(le, rc, repeat(3))))
        if len(out) == len(slab):
            return out
        shared = list(compress(slab, map(gt, rc, repeat(3))))
        rc = slab = None
        try:
            new = set(shared)
            seen = self.shared
        except TypeError:
            new = set(map(id, shared))
            seen = self.shared_ids
        new.difference_update(seen)
        if not new:
            return out
        room = MAX_SHARED - len(self.shared) - len(self.shared_ids)
        if len(new) > room:
            if room > 0:
                self.complete = False
                self.notes.append(
                    "untracked objects: more than %d shared ones; the rest are not counted"
                    % MAX_SHARED)
            new = set(islice(new, max(0, room)))
        seen.update(new)
        if seen is self.shared:
            out.extend(new)
        else:
            picked = list(compress(shared, map(new.__contains__, map(id, shared))))
            out.extend(dict(zip(map(id, picked), picked)).values())
        return out

    def keep(self, objs, types, boxes, added):
        """Keep KEEP instances of each untracked type to trace later, drawn where the type's
        bytes are. Each slab offers candidates of each type — its first, middle and last
        instance; KEEP spread over the slab for the slab's HEAVY heaviest types — each weighted
        by its share (by size) of the bytes of the type the slab added (`added`), into a
        weighted reservoir (Efraimidis and Spirakis: key log(u) / weight; the KEEP largest keys
        stay). So the 12,000 pages an lru_cache holds, met in one slab, fill the reservoir, and
        the import-time bytes met in every other slab (the environment, a decoder's buffer) do
        not. One found inside an untracked dict or tuple gets it as its holder's group
        (gc.get_referrers cannot see such a holder)."""
        kept = self.kept
        keys = self.keys
        n = len(types)
        heavy = sorted(added, key=added.__getitem__, reverse=True)[:HEAVY]
        for t in set(types):
            weight = added.get(t, 0)
            if weight <= 0:
                continue
            got = kept.get(t)
            if got is None:
                got = kept[t] = self.mine([])
                keys[t] = []
            key_list = keys[t]
            if t in heavy:
                # The slab's heaviest types offer KEEP instances spread over it: a slab that
                # holds most of a type's bytes can fill the reservoir on its own.
                where = list(compress(range(n), map(is_, types, repeat(t))))
                at = where[:: max(1, len(where) // KEEP)][:KEEP]
                where = None
            else:
                first = types.index(t)
                last = n - 1 - types[::-1].index(t)
                at = sorted({first, types.index(t, (first + last) // 2), last})
            # Each candidate stands for the slab's bytes of the type in proportion to its own
            # size: an environment string met beside the cache's pages stands for little.
            own = [sys.getsizeof(objs[i], 1) for i in at]
            whole = float(sum(own)) or 1.0
            for i, size in zip(at, own):
                share = weight * size / whole
                if share <= 0:
                    continue
                key = _log(self.uniform()) / share
                if len(got) >= KEEP:
                    low = min(range(len(key_list)), key=key_list.__getitem__)
                    if key <= key_list[low]:
                        continue
                    self.holder.pop(id(got[low]), None)
                    del got[low], key_list[low]
                o = objs[i]
                got.append(o)
                key_list.append(key)
                if boxes:
                    # Which of the boxes holds it is looked for if it is traced (see climb).
                    self.holder[id(o)] = self.mine(boxes)

    def uniform(self):
        """A number in (0, 1) from a fixed-seed generator (a 64-bit LCG): the same heap gives
        the same samples, and nothing is imported into the job for it."""
        self.rng = (self.rng * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return ((self.rng >> 11) + 0.5) / 9007199254740992.0

    def allocated(self):
        """With tracemalloc on (PYTHONTRACEMALLOC, guard's --tracemalloc): the lines that
        allocated the most memory still live, from one snapshot — taken only when it fits in
        what is left of the budget (it copies every trace: about twice tracemalloc's own
        memory), and only in a held job (it keeps the GIL while it copies)."""
        try:
            import tracemalloc
        except ImportError:
            return None
        if not tracemalloc.is_tracing():
            return None
        out = {"frames": tracemalloc.get_traceback_limit(),
               "traced_bytes": tracemalloc.get_traced_memory()[0], "lines": []}
        need = 2 * tracemalloc.get_tracemalloc_memory()
        if need > self.budget - self.spent():
            out["skipped"] = ("its snapshot would take about %d MiB, more than the census has "
                              "left of its budget" % (need >> 20))
            return out
        snap = tracemalloc.take_snapshot()
        try:
            stats = snap.statistics("lineno")
            snap = None
            for st in stats:
                frame = st.traceback[0]
                if frame.filename in self.own_files:
                    continue
                if len(out["lines"]) == TOP_LINES:
                    break
                out["lines"].append({
                    "where": "%s:%d" % (frame.filename.rsplit("/", 1)[-1], frame.lineno),
                    "file": frame.filename, "bytes": st.size, "count": st.count})
        finally:
            snap = stats = None
        return out

    def find_roots(self):
        """id -> root label for the locals of every live frame (Python >= 3.11 does not show a
        running frame's locals to gc.get_referrers), module globals by dict id."""
        roots = {}
        self.module_dicts = {}
        for name, m in list(sys.modules.items()):
            d = getattr(m, "__dict__", None)
            if isinstance(d, dict):
                self.module_dicts[id(d)] = name
        self.mine(self.module_dicts)
        frames = []
        try:
            current = sys._current_frames()
        except Exception:
            current = {}
        for f in current.values():
            chain_ = []
            while f is not None:
                chain_.append(f)
                f = f.f_back
            # Outermost first: the caller's name for an object ('qs' in the command) says more
            # than 'self' in the method it called.
            frames.extend(reversed(chain_))
        self.mine(frames)
        for f in frames:
            code = f.f_code
            if code.co_filename in self.own_files:
                continue
            try:
                loc = f.f_locals
                items = list(loc.items())
            except Exception:
                continue
            if isinstance(loc, dict):
                self.mine(loc)
            self.mine(items)
            where = _code_where(code, f.f_lineno)
            module = self.module_dicts.get(id(loc))
            for name, value in items:
                if module is not None:
                    label = ("global", "global '%s' in module %s" % (name, module))
                else:
                    label = ("local", "local '%s' in %s" % (name, where))
                roots.setdefault(id(value), label)
        return roots

    def samples(self, t, count):
        """Up to SAMPLES instances of `t`: tracked ones spread over the heap (a quarter, a half
        and three quarters in), untracked ones from the reservoir filled while counting (see keep)."""
        if count <= 0:
            return []
        kept = self.kept.get(t)
        if kept:
            # The reservoir's largest keys: where most of the type's bytes are, most likely.
            keys = self.keys[t]
            best = sorted(range(len(kept)), key=keys.__getitem__, reverse=True)[:SAMPLES]
            return [kept[i] for i in best]
        want = sorted({count // 4, count // 2, (3 * count) // 4})[:SAMPLES]
        pool = compress(self.objs, map(is_, map(type, self.objs), repeat(t)))
        got = []
        pos = 0
        for k in want:
            item = next(islice(pool, k - pos, None), None)
            pos = k + 1
            if item is None:
                break
            got.append(item)
        return got

    def walk_estimate(self, untracked):
        """How long one gc.get_referrers call (a read of every tracked object's references)
        would hold the GIL: the time listing the objects took, and WALK_REF_S for each reference
        of a tracked object to an untracked one the counting met (10 M references: ~105 ms
        measured, 150 ms estimated). None when the counting did not see them all."""
        if not getattr(self, "untracked_done", False):
            return None
        return self.list_s + self.direct_refs * WALK_REF_S

    def paths(self, types, counts):
        """The retention paths of `types`, their samples traced together (see trace). In a
        running job, none when one walk of the heap would hold the GIL over SLICE: they come at
        the cap."""
        if self.live:
            est = self.walk_estimate(self.untracked_count)
            if est is None or est > SLICE:
                self.complete = False
                self.notes.append(
                    "paths: %s; the paths come at the cap"
                    % ("the counting did not finish, so the cost of a walk of the heap is not "
                       "known" if est is None else
                       "one walk of the heap would hold a running job's threads ~%.0f ms"
                       % (est * 1000.0)))
                return []
        per_type = [self.mine(self.samples(t, counts[t])) for t in types]
        traced = self.trace(self.mine([s for samples in per_type for s in samples]))
        out = []
        for t, samples in zip(types, per_type):
            mine, traced = traced[: len(samples)], traced[len(samples):]
            mine = [p for p in mine if not p.get("cut")]
            if mine or not samples:
                out.append(_summary(t, mine))
        return out

    def trace(self, samples):
        """Walk up from each sample to a root, all samples at once: one gc.get_referrers call
        per step for every candidate of every sample (each call walks the whole heap, so the
        samples share it), a beam of BEAM candidates per sample. Returns, per sample, the labels
        from its holder up to the root. The census's own containers must not hold the nodes
        while gc.get_referrers runs (they would be found as referrers): the nodes live in lists
        marked as the census's own, the rest is cleared."""
        states = [_Walk(self.mine([s]), id(s)) for s in samples]
        for _ in range(MAX_DEPTH):
            active = [w for w in states if w.result is None]
            for w in active:
                w.at_root(self.roots)
            active = [w for w in active if w.result is None]
            if not active or not self.check("paths"):
                break
            nodes = self.mine([n for w in active for n in w.nodes])
            t = time.monotonic()
            refs = gc.get_referrers(*nodes)
            # Python >= 3.13 keeps the tuple `*nodes` made for the call alive and tracked while
            # the call runs, and finds it among the referrers (a chain of tuple[1] up to
            # MAX_DEPTH): not a holder.
            refs = [r for r in refs
                    if not (type(r) is tuple and len(r) == len(nodes) and all(map(is_, r, nodes)))]
            if self.live and time.monotonic() - t > SLICE:
                # One read of the heap held the GIL longer than a running job may be held (the
                # estimate was short): no second one; the paths come at the cap.
                self.complete = False
                self.notes.append(
                    "paths: one walk of the heap took %.0f ms, longer than a running job is "
                    "held; the paths come at the cap" % ((time.monotonic() - t) * 1000.0))
                refs = nodes = None
                for w in states:
                    w.result = w.result or {"path": [], "root": None, "cut": True}
                break
            pairs = [self.match(w, refs, nodes) for w in active]
            refs = None
            for i, w in enumerate(active):
                self.climb(w, pairs[i])
                pairs[i] = None
            # Nothing of this step may hold the next step's nodes (they would be found as
            # their referrers).
            pairs = w = None
            self.own.discard(id(nodes))
            nodes = refs = None
        for w in states:
            if w.result is None:
                last = w.paths[0] if w.paths else []
                w.result = {"path": last + ["(no referrer guard can see)"], "root": None}
        return [w.result for w in states]

    def match(self, w, refs, nodes):
        """Which of `refs` hold which of the walk's nodes: (referrer, node index) pairs. Read
        for every walk before any is labelled: naming an attribute (Python >= 3.11) turns an
        instance's values into a dict of their own, and the instance then holds that dict, not
        the node another walk shares."""
        out = []
        for r in islice(refs, MAX_REFERRERS):
            if id(r) in w.seen and not w.closed and any(_refers(r, n) for n in w.nodes):
                # Held by something this walk came through: a cycle.
                w.closed = True
            if id(r) in self.own or id(r) in w.seen or r is nodes:
                continue
            if type(r).__name__ == "frame" and r.f_code.co_filename in self.own_files:
                continue
            if isinstance(r, type) and r.__dict__.get("__module__") == __name__:
                continue  # the census's own classes
            for i, n in enumerate(w.nodes):
                if _refers(r, n):
                    out.append((r, i))
                    break
        return out

    def climb(self, w, pairs):
        """One step up for the walk `w`, through the referrers `match` found for it."""
        came = w.paths[0] if w.paths else []
        found = []
        refs = [r for r, _ in pairs]
        for r, i in pairs:
            rank, new, final = self.step(r, w.nodes[i], w.paths[i])
            found.append([rank, len(found), new, final, id(r)])
            if final:
                w.result = {"path": new, "root": final}
                return
        if not found and len(w.nodes) == 1 and id(w.nodes[0]) in self.holder:
            # Held by an untracked dict or tuple, which gc.get_referrers cannot see: one of
            # the boxes it was found among.
            c = next((b for b in self.holder[id(w.nodes[0])] if _refers(b, w.nodes[0])), None)
            if c is not None:
                rank, new, final = self.step(c, w.nodes[0], w.paths[0])
                refs = [c]
                found = [[rank, 0, new, final, id(c)]]
        picked = sorted(found, key=lambda c: (c[0], c[1]))[:BEAM * 4]
        keep = set(c[4] for c in picked)
        by_id = dict((id(r), r) for r in refs if id(r) in keep) if keep else {}
        del w.nodes[:]
        w.paths = []
        for c in picked:
            if c[4] in w.seen or c[4] not in by_id:
                continue
            w.seen.add(c[4])
            w.nodes.append(by_id[c[4]])
            w.paths.append(c[2])
            if len(w.nodes) == BEAM:
                break
        if not w.nodes:
            if not picked and w.closed:
                # Nothing outside the cycle refers to it: garbage the collector has not freed
                # (it is disabled, or has not come to this generation yet).
                w.result = {"path": came + [GARBAGE], "root": "garbage"}
                return
            last = picked[0][2] if picked else []
            w.result = {"path": last + ["(no referrer guard can see)"], "root": None}

    def step(self, r, child, labels):
        """(rank, labels up to `r`, root kind or None) for `r` holding `child`; lower ranks are
        followed first."""
        tr = type(r)
        if type(child) is dict and labels[-1:] and labels[-1].startswith("dict["):
            # An instance's or a class's __dict__: one label for both steps.
            key = labels[-1][5:-1].strip("'")
            if isinstance(r, type) and "__module__" in child:
                return (0, labels[:-1] + ["class attribute %s.%s" % (_short_type(r), key)], "class")
            try:
                own = object.__getattribute__(r, "__dict__") is child
            except Exception:
                own = False
            if own:
                return (1, labels[:-1] + ["%s.%s" % (_short_type(tr), key)], None)
        if tr is dict:
            key = _key_of(r, child)
            mod = self.module_dicts.get(id(r))
            if mod is not None:
                return (0, labels + ["global %s in module %s" % (key, mod)], "global")
            # dict['name'] for a str key; dict[key 8] for a number (list[8] counts items).
            return (2, labels + ["dict[%s]" % (("key " + key) if key.isdigit() else key)], None)
        if isinstance(r, type):
            key = _key_of(r.__dict__, child).strip("'")
            if key == "\u2026":
                return (0, labels + ["class %s" % _type_name(r)], "class")
            return (0, labels + ["class attribute %s.%s" % (_short_type(r), key)], "class")
        name = tr.__name__
        if tr in (list, tuple, set, frozenset) or name == "deque":
            return (2, labels + ["%s[%d]" % (name, len(r))], None)
        if name == "frame":
            where = _code_where(r.f_code, r.f_lineno)
            return (0, labels + ["local %s in %s" % (_key_of(r.f_locals, child), where)], "local")
        if name in ("generator", "coroutine", "async_generator"):
            fr = getattr(r, "gi_frame", None) or getattr(r, "cr_frame", None) or getattr(r, "ag_frame", None)
            if fr is not None:
                label = "local %s in suspended %s" % (_key_of(fr.f_locals, child), _code_where(fr.f_code, fr.f_lineno))
                return (3, labels + [label], None)
            return (3, labels + [name], None)
        if name == "module":
            return (0, labels + ["module %s" % getattr(r, "__name__", "?")], "global")
        if name in ("cell", "function", "method", "builtin_function_or_method"):
            return (4, labels + ["%s %s" % (name, getattr(r, "__qualname__", ""))], None)
        attr = _attr_of(r, child)
        return (1, labels + ["%s.%s" % (_short_type(tr), attr) if attr else _short_type(tr)], None)


class _OverBudgetError(Exception):
    def __init__(self, objects, budget):
        Exception.__init__(
            self,
            "listing the %d objects the collector tracks took more than the census's memory "
            "budget (%d MiB): no census" % (objects, budget >> 20))


class _Walk(object):
    """One sample's way up: its candidates (nodes) and the labels that led to each."""

    def __init__(self, nodes, first):
        self.nodes = nodes
        self.paths = [[]]
        self.seen = {first}
        self.result = None
        self.closed = False  # a referrer the walk came through holds a node: a cycle

    def at_root(self, roots):
        for i, node in enumerate(self.nodes):
            root = roots.get(id(node))
            if root is not None:
                self.result = {"path": self.paths[i] + [root[1]], "root": root[0]}
                return


def _summary(t, traced):
    """The retention path of type `t` from its samples' paths: the route most of them took."""
    out = {"type": _type_name(t), "samples": len(traced), "agree": 0, "path": [],
           "root": None, "others": []}
    if not traced:
        return out
    shapes = Counter(_shape(p["path"]) for p in traced)
    shape, n = shapes.most_common(1)[0]
    best = next(p for p in traced if _shape(p["path"]) == shape)
    out.update(agree=n, path=best["path"], root=best["root"])
    out["others"] = [p["path"] for p in traced if _shape(p["path"]) != shape][:2]
    return out


def _refers(r, n):
    """Whether `r` holds `n` (by identity, walked in C for the built-in containers)."""
    try:
        return any(map(is_, _referents(r), repeat(n)))
    except Exception:
        return False


def _key_of(container, child):
    try:
        for i, (k, v) in enumerate(container.items()):
            if i >= MAX_SCAN:
                break
            if v is child:
                return _key_text(k)
            if k is child:
                return "(key)"
    except Exception:
        pass
    return "\u2026"


def _attr_of(obj, child):
    try:
        d = object.__getattribute__(obj, "__dict__")
        for k, v in d.items():
            if v is child:
                return str(k)
    except Exception:
        pass
    try:
        for cls in type(obj).__mro__:
            for s in getattr(cls, "__slots__", ()) or ():
                if getattr(obj, s, None) is child:
                    return str(s)
    except Exception:
        pass
    return None


def _shape(path):
    """A path without its counts, keys and line numbers: samples that agree on it took one
    route (two pages of one cache are held by `dict[key 4470]` and `dict[key 7474]`, two
    sessions by `dict['session-5']` and `dict['session-9']`). In garbage, where the walk goes
    round the cycle in any order: the holder and that it is garbage."""
    if path and path[-1] == GARBAGE:
        return (_shape(path[:1]) + (GARBAGE,)) if len(path) > 1 else (GARBAGE,)
    out = []
    for label in path:
        label = label.split(" (", 1)[0]
        head, sep, rest = label.partition("[")
        if sep and (rest[:-1].isdigit() or head == "dict"):
            label = head
        out.append(label)
    return tuple(out)
