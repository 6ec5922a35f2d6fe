#!/usr/bin/env bash
# One command: install what the benchmarks need (scripts/setup.sh --bench: the test tools plus
# Icecast, wrk, matplotlib and py-spy), run every benchmark one after another and write bench/report.md,
# bench/report.json and bench/plots/. About 30 minutes on a 2-core machine; nothing else should run
# meanwhile. Arguments go to bench.run (--only NAME,…  --quick  --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --bench
exec .venv/bin/python -m bench.run "$@"
