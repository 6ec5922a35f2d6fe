#!/usr/bin/env bash
# One command: install what a local cluster needs (the virtualenv, and with apt-get: redis-server,
# postgresql, nginx, varnish), then start Redis, PostgreSQL, two API nodes, two media nodes and the
# edge (Varnish; --edge nginx for nginx) on loopback and print the URL. Ctrl-C stops them all. Arguments go to scripts/cluster.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --cluster
exec .venv/bin/python scripts/cluster.py "$@"
