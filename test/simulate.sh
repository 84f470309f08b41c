#!/bin/bash
# test/simulate.sh: a federation of N servers behind nginx, written to, dumped
# and pulled at random, with faults, and checked (test/simulate.pl says how).
#
#   test/simulate.sh [--machines N] [--rounds R] [--seed S] [--every K]
#
# N servers (default 5), R rounds (default 20), a checking round every K
# rounds (default 5) and at the end; the same seed gives the same choices.
# Installs what is missing, builds and installs the extension first (as
# test/run.sh does).  Prints "R rounds, N divergences, N invariant
# violations" last; exits non-zero on any.
set -u
. "$(dirname "$0")/lib.sh"

machines=5
rounds=20
seed=1
every=5
while [ $# -gt 0 ]; do
	case "$1" in
		--machines) machines=$2; shift 2 ;;
		--rounds) rounds=$2; shift 2 ;;
		--seed) seed=$2; shift 2 ;;
		--every) every=$2; shift 2 ;;
		*) die "usage: test/simulate.sh [--machines N] [--rounds R] [--seed S] [--every K]" ;;
	esac
done
[ "$machines" -ge 2 ] && [ "$machines" -le 9 ] || die "--machines must be 2 to 9"
[ "$rounds" -ge 1 ] || die "--rounds must be at least 1"
[ "$every" -ge 1 ] || die "--every must be at least 1"

cleanup() {
	if [ -n "${SYNC_WORK:-}" ]; then
		local sim=$SYNC_WORK/sim m
		if [ -f "$sim/nginx/nginx.pid" ]; then
			as_runner /usr/sbin/nginx -p "$sim/nginx" -c "$sim/nginx/nginx.conf" \
				-e "$sim/nginx/error.log" -s stop 2>/dev/null
		fi
		for m in $(seq 1 "$machines"); do
			[ -f "$sim/data$m/postmaster.pid" ] &&
				as_runner "$PGBIN/pg_ctl" -D "$sim/data$m" -m immediate stop >/dev/null 2>&1
		done
		[ -z "${SYNC_KEEP_WORK:-}" ] && rm -rf "$SYNC_WORK"
	fi
}
trap cleanup EXIT

sync_setup
sim=$SYNC_WORK/sim
port=$(( 20000 + RANDOM % 20000 ))
as_runner mkdir -p "$sim/www" "$sim/nginx/tmp"

# one server per machine, on a Unix socket only, each publishing into its
# own directory that nginx serves at /m<id>/
for m in $(seq 1 "$machines"); do
	as_runner mkdir -p "$sim/www/d$m"
	as_runner ln -s "$sim/www/d$m" "$sim/www/m$m"
	as_runner "$PGBIN/initdb" -D "$sim/data$m" -A trust -U postgres >/dev/null 2>&1 ||
		die "initdb of machine $m failed"
	as_runner "$PGBIN/pg_ctl" -D "$sim/data$m" -l "$sim/server$m.log" -w \
		-o "-c listen_addresses='' -k $sim -p $((5600 + m)) -c shared_buffers=32MB -c max_connections=20 -c sync.dump_directory=$sim/www/d$m -c sync.timeout=20000" \
		start >/dev/null || die "machine $m did not start"
done

cat >"$SYNC_WORK/nginx.conf.tmp" <<NGINX
daemon on;
worker_processes 1;
pid $sim/nginx/nginx.pid;
error_log $sim/nginx/error.log warn;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $sim/nginx/tmp/body;
	proxy_temp_path $sim/nginx/tmp/proxy;
	fastcgi_temp_path $sim/nginx/tmp/fastcgi;
	uwsgi_temp_path $sim/nginx/tmp/uwsgi;
	scgi_temp_path $sim/nginx/tmp/scgi;
	server { listen 127.0.0.1:$port; root $sim/www; }
}
NGINX
as_runner cp "$SYNC_WORK/nginx.conf.tmp" "$sim/nginx/nginx.conf"
as_runner /usr/sbin/nginx -p "$sim/nginx" -c "$sim/nginx/nginx.conf" -e "$sim/nginx/error.log" ||
	die "nginx did not start"

log "simulating $machines machines, $rounds rounds, seed $seed"
as_runner env SIM_MACHINES="$machines" SIM_ROUNDS="$rounds" SIM_SEED="$seed" SIM_EVERY="$every" \
	SIM_SOCKETS="$sim" SIM_WWW="$sim/www" SIM_BIN="$PGBIN" SIM_PORT="$port" \
	perl "$SYNC_WORK/src/test/simulate.pl"
