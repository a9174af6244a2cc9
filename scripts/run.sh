#!/usr/bin/env bash
# Runs Orderflow: builds it, finds or starts PostgreSQL, migrates, seeds the demo catalog,
# starts the API, the payment provider simulator (gateway-sim) and the three workers,
# places demo orders and shows them finish, then keeps running until Ctrl-C.
#
#   PROFILE=dev scripts/run.sh     # faster build, slower binaries (default: release)
#   DEMO_ORDERS=0 scripts/run.sh   # skip the demo burst
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/lib.sh

: "${API_ADDR:=127.0.0.1:8080}"
: "${MAIL_DIR:=$ROOT/.data/mail}"
: "${PROFILE:=release}"
: "${DEMO_ORDERS:=200}"
# The e-mails link to the orders here.
: "${PUBLIC_URL:=http://$API_ADDR}"
# The demo burst places all its orders from this host: the per-client limit (30 a minute
# by default) is off unless set.
: "${ORDER_RATE_LIMIT:=0}"
# The payment worker charges through gateway-sim over HTTP; its journal remembers charges
# across restarts. It answers as slowly as a real provider (300 ms median, 800 ms p99), so
# that an order's page shows it move from step to step; GATEWAY_LATENCY_P50_MS=0
# GATEWAY_LATENCY_P99_MS=0 make it answer at once.
: "${GATEWAY_LATENCY_P50_MS:=300}"
: "${GATEWAY_LATENCY_P99_MS:=800}"
: "${GATEWAY_ADDR:=127.0.0.1:8090}"
: "${GATEWAY_JOURNAL_DIR:=$ROOT/.data/gateway}"
: "${PAYMENT_GATEWAY_URL:=http://$GATEWAY_ADDR}"
export API_ADDR MAIL_DIR PUBLIC_URL ORDER_RATE_LIMIT GATEWAY_ADDR GATEWAY_JOURNAL_DIR PAYMENT_GATEWAY_URL \
    GATEWAY_LATENCY_P50_MS GATEWAY_LATENCY_P99_MS

ensure_rust
command -v curl >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq curl >/dev/null; } \
    || die "curl is needed for the demo"
ensure_postgres

log "building ($PROFILE)"
cargo build --profile "$PROFILE" --bins --locked
case "$PROFILE" in dev) BIN="$ROOT/target/debug" ;; *) BIN="$ROOT/target/$PROFILE" ;; esac

"$BIN/order-api" migrate
"$BIN/order-api" seed

# Each run starts with empty logs and (by default) an empty mail folder; the run before
# this one is kept in .data/previous-run/, older ones are dropped.
if [ -d .data/logs ] || { [ "$MAIL_DIR" = "$ROOT/.data/mail" ] && [ -d "$MAIL_DIR" ]; }; then
    rm -rf .data/previous-run
    mkdir -p .data/previous-run
    [ ! -d .data/logs ] || mv .data/logs .data/previous-run/logs
    [ "$MAIL_DIR" != "$ROOT/.data/mail" ] || [ ! -d "$MAIL_DIR" ] || mv "$MAIL_DIR" .data/previous-run/mail
    log "the previous run's logs and e-mails are in .data/previous-run/"
fi
mkdir -p .data/logs "$MAIL_DIR"
# The pipeline view (/ops) and the admin API need an admin token: unless one is set, the
# demo makes one and keeps it in a file only this user can read.
if [ -z "${ADMIN_TOKEN:-}" ]; then
    token_file=.data/admin-token
    if [ ! -s "$token_file" ]; then
        (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$token_file")
    fi
    ADMIN_TOKEN="$(cat "$token_file")"
    admin_hint="the token is in $token_file"
else
    admin_hint="with your ADMIN_TOKEN"
fi
export ADMIN_TOKEN
pids=()
stop_all() {
    trap - EXIT INT TERM
    if [ "${#pids[@]}" -gt 0 ]; then
        log "stopping"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
    stop_private_cluster
}
trap stop_all EXIT
trap 'exit 0' INT TERM

start() {
    local name="$1" metrics="${2:-}"
    MIGRATE_ON_START=false METRICS_ADDR="$metrics" "$BIN/$name" >"$ROOT/.data/logs/$name.log" 2>&1 &
    pids+=("$!")
    log "started $name (pid $!, log .data/logs/$name.log${metrics:+, metrics http://$metrics/metrics})"
}
start order-api
start gateway-sim
start payment-worker 127.0.0.1:9101
start inventory-worker 127.0.0.1:9102
start notification-worker 127.0.0.1:9103

api="http://$API_ADDR"
for _ in $(seq 1 100); do
    curl -fsS "$api/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$api/readyz" >/dev/null || die "the API did not become ready; see .data/logs/order-api.log"

sql() { psql "$DATABASE_URL" -qtAX -c "$1"; }

product_ids=($(curl -fsS "$api/products" | grep -o '"id":"[^"]*"' | cut -d'"' -f4 | head -n 20))
[ "${#product_ids[@]}" -gt 0 ] || die "no products in the catalog"

order_json() { # token, product, quantity
    printf '{"customer":{"email":"demo@example.com","name":"Demo Customer"},"items":[{"product_id":"%s","quantity":%s}],"payment":{"token":"%s"}}' "$2" "$3" "$1"
}

log "placing demo orders"
demo_ids=()
for i in 0 1 2 3 4; do
    token=tok_visa; [ "$i" = 3 ] && token=tok_chargeDeclined
    body="$(order_json "$token" "${product_ids[$i]}" $((i + 1)))"
    id=$(curl -fsS -X POST "$api/orders" -H 'Content-Type: application/json' -d "$body" | grep -o '"id":"[^"]*"' | head -n1 | cut -d'"' -f4)
    demo_ids+=("$id")
done
for _ in $(seq 1 100); do
    ids_sql="'$(IFS=,; echo "${demo_ids[*]}" | sed "s/,/','/g")'"
    pending=$(sql "SELECT count(*) FROM orders WHERE id IN ($ids_sql) AND status NOT IN ('fulfilled','cancelled')")
    [ "$pending" = 0 ] && break
    sleep 0.1
done
printf '\n%-38s %-10s %s\n' ORDER STATUS REASON
for id in "${demo_ids[@]}"; do
    printf '%-38s %-10s %s\n' "$id" $(sql "SELECT status, coalesce(cancel_reason, '') FROM orders WHERE id = '$id'" | tr '|' ' ')
done

if [ "$DEMO_ORDERS" -gt 0 ]; then
    log "demo burst: $DEMO_ORDERS orders, 8 clients at a time"
    start_ts=$(sql "SELECT now()")
    seq 1 "$DEMO_ORDERS" | xargs -P 8 -I{} sh -c \
        'curl -fsS -o /dev/null -X POST "$0/orders" -H "Content-Type: application/json" -d "$1"' \
        "$api" "$(order_json tok_visa "${product_ids[5]}" 1)"
    for _ in $(seq 1 600); do
        left=$(sql "SELECT count(*) FROM orders WHERE created_at >= '$start_ts' AND status NOT IN ('fulfilled','cancelled')")
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    sql "SELECT format('%s orders accepted and finished in %s s: %s orders/s end to end; acceptance to fulfilment p50 %s ms, p99 %s ms',
                count(*), round(extract(epoch FROM max(updated_at) - min(created_at))::numeric, 2),
                round((count(*) / nullif(extract(epoch FROM max(updated_at) - min(created_at)), 0))::numeric, 0),
                round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) * 1000)::numeric, 1),
                round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) * 1000)::numeric, 1))
         FROM orders WHERE created_at >= '$start_ts'"
fi

if [ -n "${SMTP_URL:-}" ]; then
    mail_line="sent to $SMTP_URL"
else
    mail_line="$MAIL_DIR/*.eml ($(ls "$MAIL_DIR" | wc -l) from this run so far)"
fi
if [ -n "${PRIVATE_CLUSTER_STARTED:-}" ]; then
    database_note="a private cluster this script started in $PRIVATE_CLUSTER_DATA, stopped with it; its log: $PRIVATE_CLUSTER_LOG"
else
    database_note="a server that was already running"
fi
cat <<MSG

Orderflow is running.
  Storefront: $api/            (buy something, then watch the order move)
  Pipeline:   $api/ops         ($admin_hint)
  API:        $api   (try: curl $api/products | head -c 300; reference: $api/docs)
  Database:   $(database_url_for_display)
              ($database_note)
  Logs:       .data/logs/ (this run only)
  E-mails:    $mail_line
  Operators:  $BIN/order-api queue | dead-tasks | timeline <order-id>
Press Ctrl-C to stop.
MSG
wait
