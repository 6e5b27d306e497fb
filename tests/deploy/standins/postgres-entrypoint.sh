#!/bin/sh
# The official postgres image's first-start contract: an empty PGDATA is initialised with POSTGRES_USER
# (default postgres) as the superuser, POSTGRES_PASSWORD required over TCP, and POSTGRES_DB created.
set -eu
if [ "${1:-postgres}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        quoted=$(printf '%s' "$db" | sed 's/"/""/g')
        echo "CREATE DATABASE \"$quoted\" OWNER \"$(printf '%s' "$user" | sed 's/"/""/g')\"" \
            | postgres --single -D "$PGDATA" -c unix_socket_directories= postgres >/dev/null
    fi
fi
if [ "${1:-postgres}" = postgres ]; then
    [ "$#" -gt 0 ] && shift
    exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
