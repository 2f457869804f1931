# leak: a Flask app under gunicorn (2 workers) caching rendered pages in a module-level dict
# keyed by URL; a client asks for ever new query strings
# needs: flask gunicorn
# guard: --memory 300M
# run: sh {fixture} {python}
# expect: global 'PAGES' in module flask_cache_app
# expect: fix: a module-level dict used as a cache
py=$1
here=$(dirname "$0")
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$py" -m gunicorn --workers 2 --bind "127.0.0.1:$port" --chdir "$here" --log-level warning \
  flask_cache_app:app &
exec "$py" -c '
import sys, time, urllib.request
url = "http://127.0.0.1:%s/product/%%d?utm_source=mail-%%d" % sys.argv[1]
deadline = time.monotonic() + 20
while True:  # wait for gunicorn to listen
    try:
        urllib.request.urlopen(url % (0, 0), timeout=5).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
n = 0
while True:  # a load generator: an error (a worker restarting) does not stop it
    try:
        urllib.request.urlopen(url % (n % 100, n), timeout=5).read()
    except OSError:
        time.sleep(0.01)
    n += 1
' "$port"
