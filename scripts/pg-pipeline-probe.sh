#!/usr/bin/env bash
# Measures what pipelining buys a durable usage transaction on PostgreSQL (ARCHITECTURE.md,
# "Pipelined statements"): orgdb's three usage statements for one event
# (lock the organization's row, read its usage state, write period, day and key), replayed by
# pgbench on the data of the PostgreSQL benchmark, once one statement at a time (five round
# trips with BEGIN and COMMIT) and once in two pipelines (BEGIN, lock and read; write and
# COMMIT), and pipelined with the day row's per-column merge that orgdb's write does
# (`pipelined_merge`: the write above adds to the total only), and all in one pipeline
# (`one_pipeline`: what one round trip less would buy at most, with the read's server time
# kept; orgdb cannot send its write before its read returns). One client, prepared
# statements, a durable server.
#
#   scripts/pg-server.sh run --durable -- scripts/pg-pipeline-probe.sh [SECONDS]
#
# The write stands for orgdb's (the same tables and upserts, one event's values); the read is
# orgdb's `usage_state` statement with the event's values inlined.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
url=${ORGDB_TEST_POSTGRES_URL:?run inside scripts/pg-server.sh run --durable}
bin=/usr/lib/postgresql
pgbench=$(command -v pgbench || ls "$bin"/*/bin/pgbench | tail -1)

cargo bench -q --bench postgres -- --workload record_usage_1t --rounds 1 --no-count --keep |
  grep '^| record_usage_1t'
q() { psql "$url" -Atc "$1"; }
schema=$(q "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_orgdb_%' LIMIT 1")
export PGOPTIONS="-c search_path=$schema"
org=$(q "SELECT organization_id FROM usage_periods ORDER BY 1 LIMIT 1")
start=$(q "SELECT period_start FROM usage_periods WHERE organization_id = '$org' LIMIT 1")
end=$(q "SELECT period_end FROM usage_periods WHERE organization_id = '$org' LIMIT 1")
res=$(q "SELECT id FROM resources WHERE organization_id = '$org' LIMIT 1")

lock="SELECT * FROM organizations WHERE id = ANY(ARRAY['$org']) ORDER BY id FOR UPDATE;"
read="SELECT 0, 0, NULL::INT, NULL::TEXT, coalesce(u.total, 0)::BIGINT, CASE WHEN false THEN coalesce((SELECT sum(l.amount) FROM usage_leases l WHERE l.organization_id = '$org' AND l.period_start = p.start AND l.expires_at > now() AND (NULL::TEXT IS NULL OR l.holder <> NULL)), 0) + coalesce((SELECT sum(r.count) FROM usage_reservations r WHERE r.organization_id = '$org' AND r.expires_at > now()), 0) ELSE 0 END::BIGINT, p.start FROM unnest(ARRAY['$start']::DATE[]) AS p(start) LEFT JOIN usage_periods u ON u.organization_id = '$org' AND u.period_start = p.start UNION ALL SELECT 1, 0, NULL, i.key, 0, 0, NULL FROM unnest(ARRAY['k' || :k]::TEXT[]) AS k(key), LATERAL (SELECT key FROM idempotency_keys WHERE organization_id = '$org' AND key = k.key LIMIT 1) i UNION ALL SELECT 2, 0, r.usage_column, r.id, 0, 0, NULL FROM unnest(ARRAY['$res']::TEXT[]) AS k(id), LATERAL (SELECT usage_column, id FROM resources WHERE organization_id = '$org' AND id = k.id AND removed_at IS NULL LIMIT 1) r;"
write="WITH m AS (INSERT INTO usage_periods (organization_id, period_start, period_end, total) VALUES ('$org', '$start', '$end', 1) ON CONFLICT (organization_id, period_start) DO UPDATE SET total = usage_periods.total + 1 RETURNING 1), d AS (INSERT INTO usage_days (organization_id, day, total, by_column) VALUES ('$org', '$start', 1, '{1}') ON CONFLICT (organization_id, day) DO UPDATE SET total = usage_days.total + 1 RETURNING 1) INSERT INTO idempotency_keys (organization_id, key, recorded_at) VALUES ('$org', 'k' || :k, now()) ON CONFLICT DO NOTHING;"

# orgdb's day-row update: the stored columns and the batch's added one by one.
merge="by_column = coalesce((SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY n) FROM unnest(usage_days.by_column, excluded.by_column) WITH ORDINALITY AS t(a, b, n)), '{}')"
write_merge=${write/SET total = usage_days.total + 1 RETURNING 1/SET total = usage_days.total + 1, $merge RETURNING 1}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '\\set k random(1, 2000000000)\nBEGIN ISOLATION LEVEL READ COMMITTED;\n%s\n%s\n%s\nCOMMIT;\n' \
  "$lock" "$read" "$write" >"$dir/one_at_a_time.sql"
printf '\\set k random(1, 2000000000)\n\\startpipeline\nBEGIN ISOLATION LEVEL READ COMMITTED;\n%s\n%s\n\\endpipeline\n\\startpipeline\n%s\nCOMMIT;\n\\endpipeline\n' \
  "$lock" "$read" "$write" >"$dir/pipelined.sql"
printf '\\set k random(1, 2000000000)\n\\startpipeline\nBEGIN ISOLATION LEVEL READ COMMITTED;\n%s\n%s\n\\endpipeline\n\\startpipeline\n%s\nCOMMIT;\n\\endpipeline\n' \
  "$lock" "$read" "$write_merge" >"$dir/pipelined_merge.sql"
printf '\\set k random(1, 2000000000)\n\\startpipeline\nBEGIN ISOLATION LEVEL READ COMMITTED;\n%s\n%s\n%s\nCOMMIT;\n\\endpipeline\n' \
  "$lock" "$read" "$write_merge" >"$dir/one_pipeline.sql"
for round in 1 2 3; do
  for script in one_at_a_time pipelined pipelined_merge one_pipeline; do
    tps=$("$pgbench" -n -M prepared -c 1 -T "$seconds" -f "$dir/$script.sql" "$url" 2>&1 |
      awk '/^tps/ {print $3}')
    echo "round $round  $script  $tps transactions/s"
  done
done
