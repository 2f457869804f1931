"""guard's Python hook, run by the sitecustomize.py beside it (guard(1), PYTHON HEAP CENSUS).

install() registers a handler for the signal GUARD_PYHEAP names, only when nothing handles that
signal yet; chain() then runs the sitecustomize the hook shadows (Debian's, a virtualenv's) as if
it had been found first. install() never raises: a program starts exactly as it would without
guard. An error of the chained sitecustomize reaches site.py as it would have without guard.
"""
import sys

_guard_announce = None


def install():
    try:
        import os

        spec = os.environ.get("GUARD_PYHEAP", "").split(":")
        if len(spec) != 4 or sys.version_info < (3, 6):
            return
        import _signal

        sock, signo, window_ms, here = spec[0], int(spec[1]), int(spec[2]), spec[3]
        if _signal.getsignal(signo) != _signal.SIG_DFL:
            return

        loading = [False]

        def _guard_census(signum, frame):
            # A signal while the census module loads (guard asking again at the cap) is answered
            # by the census that load is for, which connects once it has loaded.
            if loading[0]:
                return
            try:
                mod = sys.modules.get("_guard_pyheap")
                if mod is None:
                    from importlib.machinery import SourceFileLoader

                    loader = SourceFileLoader("_guard_pyheap", os.path.join(here, "_guard_pyheap.py"))
                    writes = sys.dont_write_bytecode
                    sys.dont_write_bytecode = True
                    loading[0] = True
                    try:
                        mod = type(sys)("_guard_pyheap")
                        mod.__file__ = loader.path
                        loader.exec_module(mod)
                    finally:
                        sys.dont_write_bytecode = writes
                        loading[0] = False
                    sys.modules["_guard_pyheap"] = mod
                mod.census(sock, window_ms, frame)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:
                pass

        _signal.signal(signo, _guard_census)
        # The announcement guard looks for before it signals this process (its fds, in /proc):
        # the hook's own file, open (close-on-exec: a program this one execs is not hooked
        # until its own hook says so; a forked child inherits the handler and the fd alike).
        global _guard_announce
        _guard_announce = os.open(os.path.join(here, "_guard_hook.py"), os.O_RDONLY)
    except BaseException:
        pass


def chain(site_file):
    """Run the sitecustomize this file shadows, under its own name."""
    import os

    # The entries after this one: with two guards nested, each hook runs the next one once.
    here = os.path.dirname(os.path.abspath(site_file))
    full = [os.path.abspath(p or ".") for p in sys.path]
    at = full.index(here) + 1 if here in full else 0
    path = [p for p in sys.path[at:] if os.path.abspath(p or ".") != here]
    # The path finder already loaded (importing importlib.machinery would cost 0.5 ms).
    finder = [f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder"]
    if finder and sys.version_info >= (3, 4):
        found = finder[0].find_spec("sitecustomize", path)
        if found is None or found.loader is None:
            return
        mod = type(sys)("sitecustomize")
        mod.__file__ = found.origin
        mod.__spec__ = found
        mod.__loader__ = found.loader
        sys.modules["sitecustomize"] = mod
        found.loader.exec_module(mod)
    else:
        import imp

        try:
            f, pathname, desc = imp.find_module("sitecustomize", path)
        except ImportError:
            return
        try:
            imp.load_module("sitecustomize", f, pathname, desc)
        finally:
            if f:
                f.close()


