#!/usr/bin/env bash
# Build a synchronous standby of PRIMARY_HOST on this machine (run as the postgres user).
# The primary needs, in pg_hba.conf:   host replication replicator STANDBY_IP/32 scram-sha-256
# and the settings of primary.conf. Usage: setup-standby.sh PRIMARY_HOST [DATA_DIR]
set -euo pipefail
primary="$1"
data="${2:-/var/lib/postgresql/16/main}"
# -R writes standby.signal and primary_conninfo; the application_name is the name
# the primary's synchronous_standby_names waits for.
pg_basebackup -h "$primary" -U replicator -D "$data" -R -X stream -P --checkpoint=fast
echo "primary_conninfo = 'host=$primary user=replicator application_name=standby1'" \
  >> "$data/postgresql.auto.conf"
echo "standby ready: start PostgreSQL, then check on the primary:"
echo "  SELECT application_name, sync_state FROM pg_stat_replication;  -- standby1 | sync"
echo "failover: stop or fence the old primary, then on this machine: pg_ctl promote -D $data"
