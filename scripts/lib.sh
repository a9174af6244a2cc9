# Shared by the scripts: finding or starting PostgreSQL, and a Python for the test tools.
# Source it; it expects ROOT to be the project folder.

: "${DATABASE_URL:=postgres://postgres@127.0.0.1:5432/orderflow}"
export DATABASE_URL

# Bold only on a terminal: a redirected log carries no escape codes.
if [ -t 2 ]; then
    log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
else
    log() { printf '==> %s\n' "$*" >&2; }
fi
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# DATABASE_URL with its password (if any) masked, for printing.
database_url_for_display() {
    printf '%s' "$DATABASE_URL" | sed -E 's#^([a-z]+://[^:/@]+):[^@]*@#\1:***@#'
}

# postgres://user[:pass]@host[:port]/db -> variables (no secrets printed).
parse_database_url() {
    local rest="${DATABASE_URL#*://}"
    local auth="${rest%%@*}"
    [ "$auth" = "$rest" ] && auth=""
    rest="${rest#*@}"
    local hostport="${rest%%/*}"
    PG_DB="${rest#*/}"; PG_DB="${PG_DB%%\?*}"
    PG_HOST="${hostport%%:*}"
    PG_PORT="${hostport##*:}"; [ "$PG_PORT" = "$hostport" ] && PG_PORT=5432
    PG_USER="${auth%%:*}"; [ -n "$PG_USER" ] || PG_USER=postgres
    SERVER_URL="${DATABASE_URL%/*}"
}

pg_bin_dir() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
    done
    return 1
}

# Installs Debian package $1 ($2 names it in the log) when running as root on Debian;
# false when this machine cannot.
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
    log "installing $2 from Debian's packages"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null || die "apt-get install $1 failed"
}

ensure_postgres_binaries() {
    if pg_bin_dir >/dev/null && command -v psql >/dev/null; then return 0; fi
    # Debian's package may start its own cluster; ours is managed below.
    apt_install postgresql "PostgreSQL" \
        || die "PostgreSQL is not reachable at $PG_HOST:$PG_PORT and its binaries are missing. Install PostgreSQL (e.g. apt-get install postgresql) or set DATABASE_URL to a server you have."
}

# The fault-injection tests start (and crash) clusters of their own: they need the server
# binaries even when DATABASE_URL's server runs elsewhere, and, as root, a postgres user.
ensure_cluster_tools() {
    ensure_postgres_binaries
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home postgres
    fi
}

# The browser tests drive Debian's Chromium through Playwright (Playwright's own browser
# download cannot reach its host from every machine). Prints the browser's path.
ensure_chromium() {
    local path="${CHROMIUM:-/usr/bin/chromium}"
    if [ ! -x "$path" ] && ! apt_install chromium "Chromium (browser tests)"; then
        die "Chromium is missing at $path: install it (apt-get install chromium) or set CHROMIUM"
    fi
    echo "$path"
}

# Clusters of fault-injection runs that were interrupted before they could stop them.
stop_leftover_test_clusters() {
    local data bin
    bin="$(pg_bin_dir)" || return 0
    for data in "${TMPDIR:-/tmp}"/orderflow-pg-*/data; do
        [ -f "$data/PG_VERSION" ] || continue
        if [ "$(id -u)" = 0 ]; then
            runuser -u postgres -- "$bin/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
        else
            "$bin/pg_ctl" -D "$data" stop -m immediate >/dev/null 2>&1 || true
        fi
        rm -rf "$(dirname "$data")"
    done
}

server_reachable() {
    psql "$SERVER_URL/postgres" -qtAc 'SELECT 1' >/dev/null 2>&1
}

# Starts a private cluster under .data/pg on the port of DATABASE_URL (trust auth, user postgres).
start_private_cluster() {
    local bin data run owner
    bin="$(pg_bin_dir)" || die "no PostgreSQL server binaries found"
    local base="$ROOT/.data"
    owner=""
    # initdb refuses to run as root: run the cluster as the postgres user then, in a
    # folder that user can reach (a project under /root is not).
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        mkdir -p "$base"
        if ! runuser -u postgres -- test -x "$base"; then
            base="/var/tmp/orderflow-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)"
        fi
        owner=postgres
    fi
    data="$base/pg"
    run="$base/pg-run"
    mkdir -p "$data" "$run"
    if [ -n "$owner" ]; then
        chown -R "$owner" "$data" "$run"
    fi
    chmod 700 "$data"
    as_owner() { if [ -n "$owner" ]; then runuser -u "$owner" -- "$@"; else "$@"; fi; }
    PRIVATE_CLUSTER_STOP=("$bin/pg_ctl" -D "$data" stop -m fast)
    [ -z "$owner" ] || PRIVATE_CLUSTER_STOP=(runuser -u "$owner" -- "${PRIVATE_CLUSTER_STOP[@]}")
    if [ ! -f "$data/PG_VERSION" ]; then
        log "creating a private PostgreSQL cluster in $data"
        as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null \
            || die "initdb failed"
    fi
    PRIVATE_CLUSTER_LOG="$run/postgres.log"
    PRIVATE_CLUSTER_DATA="$data"
    log "starting the private PostgreSQL cluster on port $PG_PORT"
    as_owner "$bin/pg_ctl" -D "$data" -l "$run/postgres.log" -w -t 60 \
        -o "-p $PG_PORT -k $run -c listen_addresses=$PG_HOST -c max_connections=300 -c fsync=on" start >/dev/null \
        || die "PostgreSQL did not start; see $run/postgres.log"
}

# Stops the private cluster if this script started it.
stop_private_cluster() {
    if [ -n "${PRIVATE_CLUSTER_STARTED:-}" ]; then
        log "stopping the private PostgreSQL cluster"
        "${PRIVATE_CLUSTER_STOP[@]}" >/dev/null 2>&1 || true
    fi
}

# Makes DATABASE_URL's server reachable (starting a private cluster when none answers)
# and its database exist.
ensure_postgres() {
    parse_database_url
    if ! command -v psql >/dev/null; then ensure_postgres_binaries; fi
    if ! server_reachable; then
        case "$PG_HOST" in
            127.0.0.1|localhost) ;;
            *) die "PostgreSQL at $PG_HOST:$PG_PORT is not reachable" ;;
        esac
        ensure_postgres_binaries
        # Debian's package may have started its own cluster on this port.
        if ! server_reachable; then
            start_private_cluster
            PRIVATE_CLUSTER_STARTED=1
        fi
        server_reachable || die "PostgreSQL still not reachable at $PG_HOST:$PG_PORT"
    fi
    if [ "$(psql "$SERVER_URL/postgres" -qtAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
        log "creating database $PG_DB"
        psql "$SERVER_URL/postgres" -qc "CREATE DATABASE \"$PG_DB\"" >/dev/null || die "cannot create database $PG_DB"
    fi
}

# A Python virtualenv under .venv with the given packages; prints its python.
ensure_python_tools() {
    local venv="$ROOT/.venv"
    command -v python3 >/dev/null || die "python3 is needed for the test SMTP server (aiosmtpd)"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" 2>/dev/null || {
            [ "$(id -u)" = 0 ] && apt-get install -y -qq python3-venv >/dev/null && python3 -m venv "$venv"
        } || die "cannot create a Python virtualenv"
    fi
    if ! "$venv/bin/python" -c "import $1" 2>/dev/null; then
        log "installing $* into .venv"
        "$venv/bin/pip" install -q "$@" >/dev/null || die "pip install $* failed"
    fi
    echo "$venv/bin/python"
}

ensure_rust() {
    command -v cargo >/dev/null || die "cargo is needed: install Rust (https://rustup.rs)"
}
