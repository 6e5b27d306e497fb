#!/bin/sh
# Starts redis-server with `requirepass` from REDIS_PASSWORD given as configuration on stdin (`redis-server -`),
# so the password is on no command line (`ps`, `docker inspect`'s Args). The other arguments are passed on.
# Runs through the image's docker-entrypoint.sh, which drops root to the redis user.
set -eu
: "${REDIS_PASSWORD:?set REDIS_PASSWORD}"
# redis.conf double-quoted strings take backslash escapes: escape the two characters that end or start one.
escaped=$(printf '%s' "$REDIS_PASSWORD" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')
exec docker-entrypoint.sh redis-server - "$@" <<EOF_CONFIG
requirepass "$escaped"
EOF_CONFIG
