#!/usr/bin/env bash
# `make fuzz`: schemathesis against a live server on a scratch PostgreSQL database, every operation in
# /openapi.json, with an API key of every scope. Fails on any 5xx or any response its schema does not describe.
# FUZZ_SECONDS (default 240) bounds the run; FUZZ_EXAMPLES (default 100) the cases per operation and phase.
# One schemathesis worker: with two, its threads call ast.parse at once (hypothesis describing lambdas) and
# CPython 3.11.7 fails with "AST constructor recursion depth mismatch", a runtime error, not a finding.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
FUZZ_SECONDS=${FUZZ_SECONDS:-240}
FUZZ_EXAMPLES=${FUZZ_EXAMPLES:-100}
FUZZ_PORT=${FUZZ_PORT:-5099}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}

database="loyalty_fuzz_$(date +%s)_$$"
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  psql -q -d postgres -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -q -d postgres -c "CREATE DATABASE $database"

export DATABASE_URL="postgresql+psycopg://$PGUSER@$PGHOST:$PGPORT/$database"
export LOYALTY_ENV=development LOYALTY_STRIPE_WEBHOOK_SECRET=whsec_fuzz
flask="$BIN/flask --app wsgi"
$flask db upgrade >/dev/null 2>&1
# seed-demo writes its credentials to instance/: keep those of `make run`'s own demo.
credentials=instance/demo-credentials.txt
[ -f "$credentials" ] && cp -p "$credentials" "$work/credentials"
$flask loyalty seed-demo >/dev/null
if [ -f "$work/credentials" ]; then cp -p "$work/credentials" "$credentials"; else rm -f "$credentials"; fi
key=$($flask loyalty create-api-key --name fuzz --scopes members:read,members:write,checkout,admin \
      | sed -n 's/^key (shown once): //p')

"$BIN/gunicorn" --bind "127.0.0.1:$FUZZ_PORT" --workers 2 --log-level error wsgi:app 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.1:$FUZZ_PORT/readyz" >/dev/null && break
  sleep 0.2
done

status=0
"$BIN/schemathesis" run "http://127.0.0.1:$FUZZ_PORT/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --header "Authorization: Bearer $key" \
  --max-time "$FUZZ_SECONDS" --max-examples "$FUZZ_EXAMPLES" --seed "${FUZZ_SEED:-1}" \
  --workers 1 --request-timeout 10 --suppress-health-check all --no-color "$@" || status=$?
if grep -q "Traceback" "$work/server.log"; then
  echo "The server logged errors:" >&2
  grep -B2 -A30 "Traceback" "$work/server.log" | head -80 >&2
  status=1
fi
exit $status
