# guard's Python hook (guard(1), "PYTHON HEAP CENSUS"): guard put this directory first on
# PYTHONPATH. The work is in _guard_hook.py, imported with bytecode caching on (its .pyc goes to
# this directory's __pycache__, not the program's), so that only these lines are compiled at each
# start when PYTHONDONTWRITEBYTECODE is set. Nothing here may raise into the program's start.
import sys

try:
    _guard_w = sys.dont_write_bytecode
    sys.dont_write_bytecode = False
    try:
        import _guard_hook
    finally:
        sys.dont_write_bytecode = _guard_w
except Exception:
    _guard_hook = None
if _guard_hook is not None:
    _guard_hook.install()
    _guard_hook.chain(__file__)
