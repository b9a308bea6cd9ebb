#!/usr/bin/env bash
# Integration: the web client in headless Chromium (tests/browser). Starts
# its own cluster (temporary MESSENGER_VAR, base port 26000) in
# development mode with dev tokens on, runs tests/browser/chat.test.js
# against the public URL, saves screenshots of both windows in
# build/artifacts/, and cleans the cluster whatever happens.
#
# Needs /usr/bin/chromium and node/npm (scripts/install-deps); the npm
# packages are installed here with `npm ci` when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BASE_PORT=${MESSENGER_BROWSER_TEST_BASE_PORT:-26000}
ARTIFACTS=${ARTIFACTS_DIR:-$ROOT/build/artifacts}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

for tool in node npm; do
    command -v "$tool" >/dev/null || { echo "FAIL setup: $tool is not installed"; exit 1; }
done
[ -x "$CHROMIUM" ] || { echo "FAIL setup: no Chromium at $CHROMIUM (apt-get install chromium)"; exit 1; }
if [ ! -d "$ROOT/tests/browser/node_modules/playwright-core" ]; then
    (cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi

VAR=$(mktemp -d --suffix=.messenger-browser-test)
cluster() {
    env -u MESSENGER_JWT_SECRET -u MESSENGER_INTERNAL_SECRET \
        MESSENGER_VAR="$VAR" MESSENGER_BASE_PORT="$BASE_PORT" \
        MESSENGER_DEV_MODE=1 GATEWAY_DEV_TOKENS=1 \
        ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}" \
        "$ROOT/scripts/cluster" "$@"
}
trap 'cluster clean >/dev/null 2>&1 || true' EXIT

cluster start >/dev/null
URL=$(grep '^MESSENGER_URL=' "$VAR/cluster.env" | cut -d= -f2-)
SECRET=$(grep '^MESSENGER_JWT_SECRET=' "$VAR/cluster.env" | cut -d= -f2-)
cd "$ROOT/tests/browser"
if MESSENGER_URL=$URL MESSENGER_JWT_SECRET=$SECRET ARTIFACTS_DIR=$ARTIFACTS \
    CHROMIUM=$CHROMIUM timeout 120 node chat.test.js; then
    echo "1 passed, 0 failed"
else
    echo "0 passed, 1 failed"
    exit 1
fi
