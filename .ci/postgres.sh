#!/usr/bin/env bash
# postgres.sh starts the local PostgreSQL 15 cluster for the store tests and
# prints the environment line that points them at it:
#
#   eval "export $(.ci/postgres.sh)"
#
# It is idempotent: a running cluster and an existing role are left alone. Run
# it as root on Debian 12. Progress goes to stderr so stdout is only the
# export line. The role is a superuser because storetest creates and drops a
# database per test.
set -euo pipefail

PG_VERSION=15
PG_CLUSTER=main
PG_PORT=5432
ROLE=tollgate
PASSWORD=tollgate

log() { echo "postgres.sh: $*" >&2; }

# psql runs as postgres, which may not be allowed into the caller's directory.
cd /

if [[ $(id -u) -ne 0 ]]; then
	log "must run as root (it starts the cluster with pg_ctlcluster)"
	exit 1
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ ! -x /usr/lib/postgresql/$PG_VERSION/bin/postgres ]]; then
	log "installing postgresql-$PG_VERSION"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq "postgresql-$PG_VERSION" >&2
fi

# The Debian package creates the cluster on install, but an image built
# without it (or with the cluster removed) needs one.
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { found = 1 } END { exit !found }'; then
	log "creating cluster $PG_VERSION/$PG_CLUSTER"
	pg_createcluster "$PG_VERSION" "$PG_CLUSTER" --port "$PG_PORT" >&2
fi

# The test suite runs packages in parallel, each with its own databases
# and connection pools, and SERIALIZABLE transactions take predicate locks:
# give the test server room for both.
conf="/etc/postgresql/$PG_VERSION/$PG_CLUSTER/conf.d/tollgate-tests.conf"
want=$'max_connections = 300\nmax_pred_locks_per_transaction = 256\n'
trimmed=${want%$'\n'} # as $(cat) reads it back
if [[ ! -f $conf || $(cat "$conf") != "$trimmed" ]]; then
	log "writing $conf"
	mkdir -p "$(dirname "$conf")"
	printf '%s' "$want" >"$conf"
	chown postgres:postgres "$conf" 2>/dev/null || true
	if pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c && $4 ~ /^online/ { found = 1 } END { exit !found }'; then
		log "restarting cluster $PG_VERSION/$PG_CLUSTER for the new settings"
		pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart >&2
	fi
fi

status=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $4 }')
if [[ $status != online* ]]; then
	log "starting cluster $PG_VERSION/$PG_CLUSTER"
	pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start >&2
fi

for _ in $(seq 1 60); do
	if pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then
		break
	fi
	sleep 0.5
done
if ! pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then
	log "PostgreSQL did not become ready on 127.0.0.1:$PG_PORT"
	exit 1
fi

# Local socket connections use peer auth, so talk to the server as postgres.
psql_admin() { su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $PG_PORT $*"; }

if [[ $(psql_admin "-tA -c \"SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'\"") != 1 ]]; then
	log "creating role $ROLE"
	psql_admin "-c \"CREATE ROLE $ROLE LOGIN SUPERUSER PASSWORD '$PASSWORD'\"" >&2
fi

echo "TOLLGATE_TEST_POSTGRES_DSN=postgres://$ROLE:$PASSWORD@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
