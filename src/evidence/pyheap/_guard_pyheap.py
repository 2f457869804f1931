"""guard's Python heap census: what holds the memory, and through which reference.

guard(1) puts this file and a sitecustomize.py on the job's PYTHONPATH. That hook registers a
handler for one real-time signal (only when nothing else handles it) and costs nothing more until
guard sends the signal, at the warning threshold or at the cap. The handler imports this module
and calls census(): the live objects counted by type (count and shallow size, large untracked
objects such as bytes and bytearray included), and for the largest types a retention path from
sampled instances up to a root (a local of a live frame, a module global, a class attribute).
The result goes to guard as one JSON document over guard's socket; nothing is written to disk.

It never raises into the program (KeyboardInterrupt and SystemExit excepted), holds the GIL
while it counts, and stops at the deadline guard gave it, sending what it has.
"""

import gc
import sys
import time
from collections import Counter
from functools import partial
from itertools import compress, filterfalse, islice, repeat
from operator import is_, le

FORMAT = "guard-pyheap/1"
TOP = 15  # types listed, by size and by count
PATH_TYPES = 3  # types that get retention paths
SAMPLES = 2  # instances sampled per type
MAX_DEPTH = 40  # steps up from an instance
BEAM = 2  # candidate referrers kept per sample at each step
LARGE = 1024  # untracked objects (bytes, str, bytearray...) counted from this size up
CHUNK = 20000  # objects per gc.get_referents call
MAX_REFERRERS = 20000  # referrers examined per step
MAX_SCAN = 100000  # container items searched for the key that holds an object

_busy = [False]


def census(sock_name, window_ms, frame=None):
    """Count, trace and send; called from the signal handler in the main thread."""
    if _busy[0]:
        return
    _busy[0] = True
    t0 = time.monotonic()
    mem0 = _memory()
    gc_was = gc.isenabled()
    switch = sys.getswitchinterval()
    result = {"format": FORMAT}
    try:
        gc.disable()
        sys.setswitchinterval(60.0)  # hold the GIL: the other threads wait
        # Leave a fifth of the window for sending.
        deadline = t0 + max(window_ms, 100) / 1000.0 * 0.8
        result.update(_Census(deadline, frame).run())
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: B036 - a census must never end the program
        result["error"] = "%s: %s" % (type(e).__name__, str(e)[:200])
    finally:
        sys.setswitchinterval(switch)
        if gc_was:
            gc.enable()
        _busy[0] = False
    mem1 = _memory()
    result["python"] = "%d.%d.%d" % sys.version_info[:3]
    result["implementation"] = sys.implementation.name
    result["pid"] = _pid()
    result["duration_ms"] = round((time.monotonic() - t0) * 1000.0, 3)
    result["rss_before_bytes"] = mem0[0]
    result["rss_after_bytes"] = mem1[0]
    result["hwm_growth_bytes"] = max(0, mem1[1] - mem0[1])
    _send(sock_name, result)


def _pid():
    import os

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


def _send(sock_name, result):
    import json
    import socket

    data = json.dumps(result, separators=(",", ":"), default=str).encode("utf-8", "replace")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2.0)
        s.connect("\0" + sock_name)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        s.close()


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


class _Census(object):
    def __init__(self, deadline, frame):
        self.deadline = deadline
        self.frame = frame
        self.complete = True
        self.notes = []
        self.own = set()
        self.holder = {}
        self.own_files = {__file__, __file__.rsplit(".", 1)[0] + ".py"}
        try:
            self.own_files.add(sys.modules["sitecustomize"].__file__)
        except Exception:
            pass

    def late(self):
        return time.monotonic() > self.deadline

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

        objs = self.mine(gc.get_objects())
        self.objs = objs
        out = {"objects": len(objs), "phases_ms": phases}
        phase("list")
        counts, sizes = self.histogram(objs)
        phase("histogram")
        large = self.mine(self.untracked(objs))
        phase("untracked")
        for o in large.values():
            t = type(o)
            counts[t] += 1
            sizes[t] = sizes.get(t, 0) + sys.getsizeof(o, 0)
        out["untracked_large"] = len(large)
        out["total_bytes"] = sum(sizes.values())
        by_size = sorted(sizes.items(), key=lambda kv: -kv[1])[:TOP]
        by_count = sorted(counts.items(), key=lambda kv: -kv[1])[:TOP]
        row = lambda t: {"type": _type_name(t), "count": counts[t], "bytes": sizes.get(t, 0)}
        out["by_size"] = [row(t) for t, _ in by_size]
        out["by_count"] = [row(t) for t, _ in by_count]
        out["paths"] = []
        if not self.late():
            self.roots = self.find_roots()
            for t, _ in by_size[:PATH_TYPES]:
                if self.late():
                    self.complete = False
                    break
                out["paths"].append(self.paths_of(t, counts[t], large))
        else:
            self.complete = False
        phase("paths")
        del phases["_t"]
        out["complete"] = self.complete
        if self.notes:
            out["notes"] = self.notes[:10]
        return out

    def histogram(self, objs):
        counts = Counter()
        sizes = {}
        get = sizes.get
        getsizeof = sys.getsizeof
        for i in range(0, len(objs), CHUNK):
            if self.late():
                # What is counted so far is a sample of the heap, in the order the collector keeps it.
                self.complete = False
                self.notes.append("histogram: %d of %d objects counted" % (i, len(objs)))
                break
            chunk = objs[i : i + CHUNK]
            counts.update(map(type, chunk))
            try:
                for t, s in zip(map(type, chunk), map(getsizeof, chunk, repeat(0))):
                    sizes[t] = get(t, 0) + s
            except Exception:
                # A __sizeof__ that raises: that object counts 0, the rest of the chunk is redone.
                for o in chunk:
                    t = type(o)
                    try:
                        s = getsizeof(o, 0)
                    except Exception:
                        s = 0
                    sizes[t] = get(t, 0) + s
        return counts, sizes

    def untracked(self, objs):
        """Large objects the collector does not track (bytes, str, bytearray...), by id, found
        among the referents of tracked objects and of the untracked dicts and tuples they hold
        (a dict of plain values is untracked: an instance's __dict__ before Python 3.11). Which
        untracked container holds such an object goes to self.holder (gc.get_referrers cannot
        see it)."""
        large = {}
        at_least = partial(le, LARGE)
        getsizeof = sys.getsizeof
        is_container = frozenset((tuple, dict)).__contains__
        tracked = gc.is_tracked
        for i in range(0, len(objs), CHUNK):
            if self.late():
                self.complete = False
                self.notes.append("untracked objects: %d of %d objects scanned" % (i, len(objs)))
                break
            try:
                loose = list(filterfalse(tracked, gc.get_referents(*objs[i : i + CHUNK])))
                for o in compress(loose, map(at_least, map(getsizeof, loose, repeat(0)))):
                    large[id(o)] = o
                inner = list(compress(loose, map(is_container, map(type, loose))))
                loose = None
                if not inner:
                    continue
                deep = list(filterfalse(tracked, gc.get_referents(*inner)))
                big = list(compress(deep, map(at_least, map(getsizeof, deep, repeat(0)))))
                deep = None
                if not big:
                    continue
                ids = set(map(id, big))
                for o in big:
                    large[id(o)] = o
                for c in inner:
                    for x in gc.get_referents(c):
                        if id(x) in ids:
                            self.holder.setdefault(id(x), c)
            except Exception:
                continue
        return large

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
            chain = []
            while f is not None:
                chain.append(f)
                f = f.f_back
            # Outermost first: the caller's name for an object ('qs' in the command) says more
            # than 'self' in the method it called.
            frames.extend(reversed(chain))
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

    def samples(self, t, count, large):
        """Up to SAMPLES instances of `t`, spread over the heap (a third and two thirds in)."""
        if count <= 0:
            return []
        want = sorted({count // 3, (2 * count) // 3})[:SAMPLES]
        pool = compress(self.objs, map(partial(is_, t), map(type, self.objs)))
        got = []
        pos = 0
        for k in want:
            item = next(islice(pool, k - pos, None), None)
            pos = k + 1
            if item is None:
                break
            got.append(item)
        if not got:
            pool = [o for o in large.values() if type(o) is t]
            got = [pool[min(k, len(pool) - 1)] for k in want] if pool else []
        return got

    def paths_of(self, t, count, large):
        samples = self.mine(self.samples(t, count, large))
        traced = [self.trace(s) for s in samples]
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

    def trace(self, sample):
        """Walk up from `sample` to a root: a beam of BEAM candidates, one gc.get_referrers call
        per step. Returns the labels from the sample's holder up to the root. The census's own
        containers must not hold the nodes while gc.get_referrers runs (they would be found as
        referrers): the nodes live in one list marked as the census's own, the rest is cleared."""
        nodes = self.mine([sample])
        paths = [[]]
        seen = {id(sample)}
        for _ in range(MAX_DEPTH):
            for i, node in enumerate(nodes):
                root = self.roots.get(id(node))
                if root is not None:
                    return {"path": paths[i] + [root[1]], "root": root[0]}
            if self.late():
                self.complete = False
                break
            refs = gc.get_referrers(*nodes)
            found = []
            for r in islice(refs, MAX_REFERRERS):
                if id(r) in self.own or id(r) in seen or r is nodes:
                    continue
                if type(r).__name__ == "frame" and r.f_code.co_filename in self.own_files:
                    continue
                for i, n in enumerate(nodes):
                    if _refers(r, n):
                        rank, new, final = self.step(r, n, paths[i])
                        found.append([rank, len(found), new, final])
                        break
                else:
                    continue
                found[-1].append(id(r))
                if found[-1][3]:
                    refs = None
                    return {"path": new, "root": final}
            if not found and len(nodes) == 1 and id(nodes[0]) in self.holder:
                # Held by an untracked dict or tuple, which gc.get_referrers cannot see.
                c = self.holder[id(nodes[0])]
                rank, new, final = self.step(c, nodes[0], paths[0])
                refs = [c]
                found = [[rank, 0, new, final, id(c)]]
            picked = sorted(found)[:BEAM * 4]
            keep = set(c[4] for c in picked)
            nxt = [r for r in refs if id(r) in keep] if keep else []
            refs = found = None
            by_id = dict((id(r), r) for r in nxt)
            del nodes[:]
            paths = []
            for c in picked:
                if c[4] in seen or c[4] not in by_id:
                    continue
                seen.add(c[4])
                nodes.append(by_id[c[4]])
                paths.append(c[2])
                if len(nodes) == BEAM:
                    break
            nxt = by_id = None
            if not nodes:
                break
        last = paths[0] if paths else []
        return {"path": last + ["(no referrer guard can see)"], "root": None}

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
            return (2, labels + ["dict[%s]" % key], None)
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


def _refers(r, n):
    try:
        return any(x is n for x in gc.get_referents(r))
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
    """A path without its counts and line numbers: samples that agree on it took one route."""
    out = []
    for label in path:
        label = label.split(" (", 1)[0]
        head, sep, rest = label.partition("[")
        if sep and rest[:-1].isdigit():
            label = head
        out.append(label)
    return tuple(out)
