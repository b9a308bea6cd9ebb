#!/usr/bin/env bash
# Integration: the deployment descriptions are valid and describe the
# cluster scripts/cluster runs (deploy/README.md, What is validated).
#
#   compose/config      docker-compose.yml passes `docker-compose config -q`
#                       with the secrets exported, and is refused without them
#   compose/components  every component and variable of `scripts/cluster
#                       describe` is in it (deploy/check-compose.js), and a
#                       component or variable it lacks is caught
#   k8s/schemas         deploy/ (kustomization.yaml and what it lists) is
#                       valid against the Kubernetes OpenAPI schemas, with
#                       probes, resources, Services, PDBs and the variables of
#                       scripts/cluster (deploy/validate-k8s.js); broken
#                       copies are caught
#   openapi/lint        docs/openapi.yaml passes `redocly lint` (recommended
#                       rules, warnings as errors); a broken copy does not
#
# Offline: the npm tools come from deploy/node_modules (scripts/install-deps
# runs npm ci there). Prints PASS/FAIL per check and "N passed, N failed".

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
TMP=$(mktemp -d --suffix=.deploy-test)
trap 'rm -rf "$TMP"' EXIT
# redocly would try to send usage data and look for updates.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
BIN=deploy/node_modules/.bin

PASSED=0
FAILED=0
pass() {
    PASSED=$((PASSED + 1))
    echo "PASS $1"
}
fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL $1: $2"
    [ -f "$TMP/out" ] && tail -n 20 "$TMP/out"
}
# expect_ok NAME CMD...: the command must succeed.
expect_ok() {
    local name=$1
    shift
    if "$@" >"$TMP/out" 2>&1; then pass "$name"; else fail "$name" "failed: $*"; fi
}
# expect_refused NAME CMD...: the command must fail (a broken input).
expect_refused() {
    local name=$1
    shift
    if "$@" >"$TMP/out" 2>&1; then fail "$name" "accepted: $*"; else pass "$name"; fi
}

if [ ! -d deploy/node_modules/kubernetes-models ] || [ ! -x "$BIN/redocly" ]; then
    echo "FAIL setup: deploy/node_modules missing (scripts/install-deps runs npm ci in deploy/)"
    echo "0 passed, 1 failed"
    exit 1
fi

# ---- docker-compose.yml
SECRETS=(MESSENGER_JWT_SECRET=compose-check-jwt-secret-0123456789abcdef
         MESSENGER_INTERNAL_SECRET=compose-check-internal-secret-0123456789)
expect_ok compose/config env "${SECRETS[@]}" docker-compose -f docker-compose.yml config -q
expect_refused compose/config-needs-secrets \
    env -u MESSENGER_JWT_SECRET -u MESSENGER_INTERNAL_SECRET docker-compose -f docker-compose.yml config -q

scripts/cluster describe >"$TMP/describe" 2>"$TMP/out" || fail compose/describe "scripts/cluster describe failed"
env "${SECRETS[@]}" docker-compose -f docker-compose.yml config >"$TMP/resolved.yaml" 2>"$TMP/out" ||
    fail compose/resolve "docker-compose config failed"
expect_ok compose/components node deploy/check-compose.js "$TMP/resolved.yaml" "$TMP/describe"
# A component scripts/cluster would add, and a variable it would pass.
{ cat "$TMP/describe"; echo "cache-9 cache CACHE_NAME CACHE_PORT"; } >"$TMP/describe-more"
expect_refused compose/catches-missing-component node deploy/check-compose.js "$TMP/resolved.yaml" "$TMP/describe-more"
sed 's/^\(storage storage .*\)$/\1 STORAGE_NEW_SETTING/' "$TMP/describe" >"$TMP/describe-var"
expect_refused compose/catches-missing-variable node deploy/check-compose.js "$TMP/resolved.yaml" "$TMP/describe-var"

# ---- Kubernetes
expect_ok k8s/schemas node deploy/validate-k8s.js deploy/kustomization.yaml "$TMP/describe"
# Broken copies: a mistyped field, a probe on the wrong path, a missing
# budget, a variable the ConfigMap no longer has.
mutate() {
    local name=$1 file=$2 expr=$3
    rm -rf "$TMP/k8s" && mkdir "$TMP/k8s" && cp deploy/*.yaml "$TMP/k8s/"
    sed -i "$expr" "$TMP/k8s/$file"
    if cmp -s "deploy/$file" "$TMP/k8s/$file"; then
        fail "k8s/$name" "the mutation changed nothing"
        return
    fi
    expect_refused "k8s/$name" node deploy/validate-k8s.js "$TMP/k8s/kustomization.yaml" "$TMP/describe"
}
mutate catches-bad-type gateway.yaml 's/replicas: 2/replicas: "two"/'
mutate catches-unknown-field cache.yaml 's/containerPort: 8301/containerPrt: 8301/'
mutate catches-wrong-probe storage.yaml 's|path: /readyz|path: /ready|'
mutate catches-missing-pdb kustomization.yaml '/pdb.yaml/d'
mutate catches-missing-variable config.yaml '/STORAGE_SHARDS/d'
mutate catches-unbounded-redis cache.yaml 's/"--maxmemory", "1536mb", //'
mutate catches-redis-over-limit cache.yaml 's/"1536mb"/"3gb"/'

# ---- OpenAPI
expect_ok openapi/lint "$BIN/redocly" lint --config deploy/redocly.yaml docs/openapi.yaml
sed 's/type: integer/type: int/' docs/openapi.yaml >"$TMP/openapi-broken.yaml"
expect_refused openapi/catches-bad-type "$BIN/redocly" lint --config deploy/redocly.yaml "$TMP/openapi-broken.yaml"

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
