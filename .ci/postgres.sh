# A throwaway PostgreSQL for the tests; sourced by .ci/run (and usable by hand:
# `source .ci/postgres.sh` in a shell started as root or as any user).
#
# Installs Debian's packages when no server is on the machine, creates a
# cluster in a temporary directory (as the postgres user when we are root),
# listens on 127.0.0.1 only, on a free port, without fsync, and creates the
# database `lfws_test`. On success LFWS_TEST_POSTGRES_DSN is exported; on
# failure the reason is printed and exported as LFWS_TEST_POSTGRES_UNAVAILABLE
# (the PostgreSQL tests skip with it) and the caller goes on. The server is
# stopped and its directory removed when the sourcing shell exits.

_pg_now() { date +%s.%N; }
_pg_elapsed() { awk -v a="$1" -v b="$(_pg_now)" 'BEGIN { printf "%.1f s", b - a }'; }

# Prints the newest PostgreSQL bin directory holding initdb, if any.
_pg_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
    done
    dir="$(dirname "$(command -v initdb 2>/dev/null)" 2>/dev/null)"
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
    return 1
}

# Runs a command as the cluster's owner: postgres when we are root.
_pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

_pg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Sets _pg_reason and returns 1 on any failure.
_pg_start() {
    local bin start
    if ! bin="$(_pg_bindir)"; then
        if [ "$(id -u)" != 0 ]; then
            _pg_reason="PostgreSQL is not installed and we are not root to install it"
            return 1
        fi
        echo "postgres: installing Debian's postgresql package"
        start="$(_pg_now)"
        # The package would create and start a "main" cluster we do not use.
        mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/lfws-ci.conf
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
            >"${TMPDIR:-/tmp}/lfws-apt-postgresql.log" 2>&1; then
            tail -n 20 "${TMPDIR:-/tmp}/lfws-apt-postgresql.log" >&2
            _pg_reason="apt-get install postgresql failed"
            return 1
        fi
        echo "postgres: apt-get update + install took $(_pg_elapsed "$start")"
        bin="$(_pg_bindir)" || { _pg_reason="no initdb after installing postgresql"; return 1; }
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        _pg_reason="there is no postgres user to run the server as"
        return 1
    fi

    _pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/lfws-postgres.XXXXXX")" || {
        _pg_reason="cannot create a temporary directory"
        return 1
    }
    chmod 755 "$_pg_dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$_pg_dir"

    start="$(_pg_now)"
    # Trust authentication is safe here: the server listens on 127.0.0.1 and
    # on a socket in its own directory, and lives for one CI run.
    if ! _pg_as_owner "$bin/initdb" -D "$_pg_dir/data" -U postgres -A trust -E UTF8 \
        --locale=C --no-sync >"$_pg_dir/initdb.log" 2>&1; then
        cat "$_pg_dir/initdb.log" >&2
        _pg_reason="initdb failed"
        return 1
    fi
    echo "postgres: initdb took $(_pg_elapsed "$start")"

    local port
    port="$(_pg_free_port)" || { _pg_reason="no free port on 127.0.0.1"; return 1; }
    start="$(_pg_now)"
    local options="-c listen_addresses=127.0.0.1 -p $port -k $_pg_dir -c max_connections=200"
    options+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    if ! _pg_as_owner "$bin/pg_ctl" -D "$_pg_dir/data" -l "$_pg_dir/server.log" -w -t 60 \
        -o "$options" start >/dev/null; then
        tail -n 20 "$_pg_dir/server.log" >&2
        _pg_reason="pg_ctl start failed"
        return 1
    fi
    _pg_bin="$bin"
    if ! "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres lfws_test; then
        _pg_reason="createdb lfws_test failed"
        return 1
    fi
    echo "postgres: server started and database created in $(_pg_elapsed "$start")"
    export LFWS_TEST_POSTGRES_DSN="postgresql://postgres@127.0.0.1:$port/lfws_test"
}

postgres_stop() {
    if [ -n "${_pg_bin:-}" ]; then
        _pg_as_owner "$_pg_bin/pg_ctl" -D "$_pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
        _pg_bin=""
    fi
    if [ -n "${_pg_dir:-}" ]; then
        rm -rf "$_pg_dir"
        _pg_dir=""
    fi
}

trap postgres_stop EXIT
_pg_reason=""
if _pg_start; then
    echo "postgres: $LFWS_TEST_POSTGRES_DSN"
else
    postgres_stop
    echo "postgres: unavailable ($_pg_reason); the PostgreSQL tests will be skipped" >&2
    export LFWS_TEST_POSTGRES_UNAVAILABLE="$_pg_reason"
    unset LFWS_TEST_POSTGRES_DSN
fi
