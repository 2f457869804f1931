"""The Flask app of gunicorn_flask.sh (not a fixture on its own): a page cache in a module-level
dict, keyed by the full URL, so every new query string adds a rendered page that never goes."""
from flask import Flask, request

app = Flask(__name__)
PAGES = {}


def render(path):
    return ("<html><body>%s</body></html>" % path).encode() * 2000


@app.route("/product/<int:pid>")
def product(pid):
    key = request.full_path  # the leak: ?utm_source=... makes every URL new
    if key not in PAGES:
        PAGES[key] = render(key)
    return PAGES[key]
