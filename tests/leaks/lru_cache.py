# leak: an unbounded functools.lru_cache on a function called with ever new arguments
# guard: --memory 200M
# expect: fix: an unbounded functools.lru_cache
# expect: retains ~
import functools


@functools.lru_cache(maxsize=None)
def render(page):
    return ("<html>%d</html>" % page).encode() * 1000


page = 0
while True:
    render(page)
    page += 1
