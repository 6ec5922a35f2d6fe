#!/usr/bin/env bash
# One command: set up (if needed) and run every check: lint, format, types, the whole test suite.
# Exits non-zero on any failure. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "== ruff check"; .venv/bin/ruff check src tests bench
echo "== ruff format"; .venv/bin/ruff format --check src tests bench
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
mkdir -p test-artifacts
# The slowest tests are listed at the end, to keep the suite inside its time.
.venv/bin/pytest --durations=20 "$@"
