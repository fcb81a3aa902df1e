#!/usr/bin/env bash
# The database side of a gateway request, without the gateway: pgbench replays, pipelined, the
# statements rowgate sends for one request (BEGIN READ ONLY; the caller statement; the
# rewritten query; ROLLBACK), next to the hand-written query alone, as a prepared statement.
# This separates what the fence costs PostgreSQL from what the gateway process costs.
#
# Run from the repository root: bash benches/pgbench/run.sh [clients] [seconds]
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and pgbench. Creates and drops the
# database rg_pgbench and the role rg_pgbench_agent.
set -euo pipefail
clients=${1:-16}
seconds=${2:-8}
db=rg_pgbench
role=rg_pgbench_agent
work=$(mktemp -d)
psql_admin() { psql -h 127.0.0.1 -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
cleanup() {
  psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "DROP ROLE IF EXISTS $role" -c "DROP ROLE IF EXISTS ${role}_owner" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cleanup_db_only() { psql_admin -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; }
cleanup_db_only
psql_admin -d postgres -c "CREATE DATABASE $db" >/dev/null
cat migrations/*.sql | psql_admin -d $db >/dev/null
cargo run --quiet --release -- install --database-url "postgres://postgres@127.0.0.1/$db" \
  --policies policies --key-file "$work/key" --agent-role $role >/dev/null
signed=$(psql_admin -d $db -Atc "SELECT encode(convert_to('anne','UTF8'),'hex') || '.' || encode(sha256(key || convert_to(encode(convert_to('anne','UTF8'),'hex'),'UTF8')),'hex') FROM rowgate_private.identity_key")
filter="department IN (SELECT department FROM permissions WHERE allowed_role IN (SELECT role FROM user_roles WHERE user_id = 'anne'))"
enter="SELECT pg_catalog.set_config('rowgate.caller', '$signed', true), rowgate.caller_exists(), (SELECT d.description FROM pg_catalog.pg_description AS d WHERE d.objoid = 'rowgate'::pg_catalog.regnamespace AND d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.objsubid = 0);"
cte="WITH rg_invoices AS NOT MATERIALIZED (SELECT * FROM rowgate.invoices)"
declare -A direct=(
  [point]="SELECT id, amount, department FROM invoices WHERE id = 42 AND $filter;"
  [aggregate]="SELECT department, count(*), sum(amount) FROM invoices WHERE $filter GROUP BY 1 ORDER BY 1;"
)
declare -A rewritten=(
  [point]="$cte SELECT id, amount, department FROM rg_invoices AS invoices WHERE id = 42;"
  [aggregate]="$cte SELECT department, count(*), sum(amount) FROM rg_invoices AS invoices GROUP BY 1 ORDER BY 1;"
)
run() { # name user script
  local tps
  tps=$(pgbench -h 127.0.0.1 -U "$2" -n -M prepared -c "$clients" -j 2 -T "$seconds" -f "$3" $db 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
  printf '| %s | %.0f |\n' "$1" "$tps"
}
echo "| arm ($clients clients, $seconds s, pipelined, prepared) | transactions/s |"
echo "|---|---|"
for q in point aggregate; do
  printf '\\startpipeline\n%s\n\\endpipeline\n' "${direct[$q]}" > "$work/direct.sql"
  printf '\\startpipeline\nBEGIN TRANSACTION READ ONLY;\n%s\n%s\nROLLBACK;\n\\endpipeline\n' "$enter" "${rewritten[$q]}" > "$work/fenced.sql"
  printf '\\startpipeline\nBEGIN TRANSACTION READ ONLY;\n%s\nSELECT 1;\nROLLBACK;\n\\endpipeline\n' "$enter" > "$work/fence.sql"
  run "$q: hand-written, superuser" postgres "$work/direct.sql"
  run "$q: rowgate's four statements" $role "$work/fenced.sql"
  [ $q = point ] && run "the fence alone (SELECT 1 as the query)" $role "$work/fence.sql"
done
