#!/bin/bash
# test/demo.sh: a guided tour of sync on a throwaway PostgreSQL cluster.
#
# Installs what is missing (as root), builds and installs the extension,
# starts a private cluster (Unix socket only, in a scratch directory) and
# an nginx on 127.0.0.1 that serves the directory machine 42 publishes
# into, as a real publisher's web server would, runs test/demo.sql through
# psql so that every statement is shown with its result, then stops both
# and removes everything it created.
set -u
. "$(dirname "$0")/lib.sh"

cleanup() {
	if [ -n "${SYNC_WORK:-}" ]; then
		stop_nginx "$SYNC_WORK/demo/nginx"
		if [ -f "$SYNC_WORK/demo/data/postmaster.pid" ]; then
			as_runner "$PGBIN/pg_ctl" -D "$SYNC_WORK/demo/data" -m fast stop >/dev/null 2>&1
		fi
		rm -rf "$SYNC_WORK"
	fi
}
trap cleanup EXIT

sync_setup

demo=$SYNC_WORK/demo
as_runner mkdir -p "$demo" "$demo/published"
log "starting a throwaway cluster in $demo"
as_runner "$PGBIN/initdb" -D "$demo/data" -A trust -U postgres >"$SYNC_WORK/initdb.log" 2>&1 ||
	{ cat "$SYNC_WORK/initdb.log"; die "initdb failed"; }
# The second part of the demo pulls on a schedule into database
# field_station: the launcher of scheduled pulls needs the library
# preloaded and its database to exist when the server starts.
start_server() {
	as_runner "$PGBIN/pg_ctl" -D "$demo/data" -l "$demo/server.log" -w \
		-o "-c listen_addresses='' -k $demo -p 5432 -c sync.dump_directory=$demo/published $*" start >/dev/null ||
		{ cat "$demo/server.log"; die "the server did not start"; }
}
start_server
as_runner "$PGBIN/psql" -X -q -h "$demo" -p 5432 -U postgres -d postgres \
	-c 'CREATE DATABASE field_station' || die "could not create the demo's second database"
as_runner "$PGBIN/pg_ctl" -D "$demo/data" -w -m fast stop >/dev/null || die "the server did not stop"
start_server "-c shared_preload_libraries=sync -c sync.database=field_station"

# machine 42's web server: its dump directory, over HTTP on loopback
start_nginx "$demo/nginx" "$demo/published"
log "nginx serves $demo/published at http://127.0.0.1:$nginx_port/"

log "running test/demo.sql"
as_runner "$PGBIN/psql" -X -a -v ON_ERROR_STOP=1 -h "$demo" -p 5432 -U postgres \
	-v url42="http://127.0.0.1:$nginx_port/" \
	-d postgres -f "$SYNC_WORK/src/test/demo.sql" || die "the demo failed"
log "demo finished; cleaning up"
