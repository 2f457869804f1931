#!/bin/sh
# Run the example under guard: a venv with Django (from PyPI), 2000 rows, the command capped at
# 200 MiB. ./run.sh --fixed runs the fixed command. GUARD (default: guard on PATH) names guard.
set -eu
cd "$(dirname "$0")"
venv=${VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import django" 2>/dev/null || "$venv/bin/pip" install -q "django>=4.2,<6"
export SHOP_DB="${SHOP_DB:-$PWD/shop.sqlite3}"
"$venv/bin/python" manage.py migrate -v0
"$venv/bin/python" manage.py seed_images 2000
exec "${GUARD:-guard}" --name fix_images --memory 200M -- "$venv/bin/python" manage.py fix_images "$@"
