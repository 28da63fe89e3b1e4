#!/usr/bin/env bash
# The LiteLLM proxy of the GitHub "tests" workflow, with the commands the integration fixtures
# expect of a harness (LITELLM_HARNESS): start, env, status, reset [--keep-proxy], stop.
#
#   start   docker run the official image ($LITELLM_IMAGE) on the host network, wait until ready
#   env     print export lines for LITELLM_PROXY_URL and LITELLM_MASTER_KEY
#   status  exit 0 when the proxy answers /health/readiness with the database connected
#   reset   empty every table of the proxy's database ($DATABASE_URL) except the migration
#           history; the proxy keeps running (its in-memory caches, TTL 60 s, are not cleared)
#   stop    remove the container
set -euo pipefail

URL="${LITELLM_PROXY_URL:-http://127.0.0.1:4000}"
NAME="${LITELLM_CONTAINER:-litellm}"

ready() { curl -fsS --max-time 5 "$URL/health/readiness" 2>/dev/null | grep -q '"db":"connected"'; }

case "${1:-}" in
  start)
    : "${LITELLM_MASTER_KEY:?set LITELLM_MASTER_KEY (it must start with sk-)}" "${DATABASE_URL:?set DATABASE_URL}"
    : "${LITELLM_IMAGE:?set LITELLM_IMAGE, e.g. ghcr.io/berriai/litellm:main-v1.80.5-stable}"
    docker run -d --name "$NAME" --network host \
      -e LITELLM_MASTER_KEY -e DATABASE_URL -e STORE_MODEL_IN_DB=True \
      "$LITELLM_IMAGE" --port "${URL##*:}" >/dev/null
    for _ in $(seq 1 90); do
      if ready; then echo "$URL"; exit 0; fi
      sleep 2
    done
    echo "the proxy at $URL is not ready after 180 s" >&2
    docker logs --tail 100 "$NAME" >&2 || true
    exit 1
    ;;
  env)
    printf 'export LITELLM_PROXY_URL=%q\n' "$URL"
    printf 'export LITELLM_MASTER_KEY=%q\n' "${LITELLM_MASTER_KEY:?set LITELLM_MASTER_KEY}"
    ;;
  status)
    ready
    ;;
  reset)
    : "${DATABASE_URL:?set DATABASE_URL}"
    psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qtA -c "DO \$\$ DECLARE t text; BEGIN
      SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') INTO t
        FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_prisma_migrations';
      IF t IS NOT NULL THEN EXECUTE 'TRUNCATE TABLE ' || t || ' RESTART IDENTITY CASCADE'; END IF;
    END \$\$;" >/dev/null
    echo "$URL"
    ;;
  stop)
    docker rm -f "$NAME" >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 start|env|status|reset [--keep-proxy]|stop" >&2
    exit 2
    ;;
esac
