#!/usr/bin/env bash
# One command: set up (if needed) and run townhall on embedded defaults. Flags go to `townhall serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/townhall serve "$@"
