#!/usr/bin/env bash
# Runs the whole test suite: finds or starts PostgreSQL, installs the test SMTP server,
# builds, and runs every test against real services.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/lib.sh

ensure_rust
ensure_postgres
trap stop_private_cluster EXIT
ensure_cluster_tools
stop_leftover_test_clusters
ORDERFLOW_TEST_PYTHON="$(ensure_python_tools aiosmtpd)"
# The API contract test runs schemathesis from the same virtualenv.
ensure_python_tools schemathesis >/dev/null
# The browser tests: Playwright (its Python package) driving Debian's Chromium.
ensure_python_tools playwright >/dev/null
CHROMIUM="$(ensure_chromium)"
export ORDERFLOW_TEST_PYTHON CHROMIUM
export TEST_DATABASE_URL="$DATABASE_URL"

# Leftovers of interrupted runs (each test normally drops its own database) and templates
# of older migrations (the tests build the current one on first use).
psql "$SERVER_URL/postgres" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'orderflow\_test\_%' OR datname LIKE 'orderflow\_template\_%'" \
    | while read -r db; do [ -n "$db" ] && psql "$SERVER_URL/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null; done

log "building"
cargo build --workspace --bins --tests --locked
# Two cores: a few tests at a time, each with its own database.
rm -f "$ROOT/target/fault-injection-report.json"
log "running the tests"
output="$ROOT/target/test-output.log"
set +e
# The whole suite runs under one deadline, so a hang fails the run instead of stalling it
# (a normal run takes 6-8 minutes on 2 cores).
timeout --kill-after=30 "${TEST_TIMEOUT_SECONDS:-2400}" \
    cargo test --workspace --locked -- --test-threads="${TEST_THREADS:-4}" "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
set -e
[ "$status" != 124 ] || log "the suite passed its ${TEST_TIMEOUT_SECONDS:-2400} s deadline and was stopped"
report="$ROOT/target/fault-injection-report.json"
if [ -f "$report" ]; then
    log "fault-injection run (services/tests/tests/chaos.rs)"
    cat "$report"
fi
# One closing line for the whole suite (cargo prints one per test binary).
passed=$(awk '/^test result:/ { p += $4 } END { print p + 0 }' "$output")
failed=$(awk '/^test result:/ { f += $6 } END { print f + 0 }' "$output")
echo "$passed passed, $failed failed"
# A filter that matches nothing, or a build that lost its tests, must not pass as green.
if [ "$status" = 0 ] && [ "$passed" = 0 ]; then
    log "no test ran"
    exit 1
fi
exit "$status"
