# test/lib.sh: shared set-up of test/run.sh and test/demo.sh.
#
# sync_setup: installs the Debian packages that are missing (as root),
# builds the extension, installs it, and prepares a scratch directory
# ($SYNC_WORK) that the unprivileged user running the servers owns.
#
# PostgreSQL refuses to run as root, so when we are root the servers run as
# $SYNC_TEST_USER (default postgres, created by the postgresql package).
# A non-root user needs the packages already installed; if it cannot write
# PostgreSQL's directories, the extension goes into a private copy of the
# PostgreSQL installation under $SYNC_WORK, as PostgreSQL's own "make
# check" does.

PG_MAJOR=${PG_MAJOR:-15}
SYNC_TEST_USER=${SYNC_TEST_USER:-postgres}
SYNC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Packages, and why each is needed:
#   postgresql-$PG_MAJOR             the server the extension runs in
#   postgresql-server-dev-$PG_MAJOR  headers, PGXS, pg_regress and the TAP
#                                    modules (PostgreSQL::Test::Cluster)
#   libcurl4-openssl-dev             libcurl, for fetching archives (pull)
#   nginx-light                      the web server between machines in tests
#   libipc-run-perl                  IPC::Run, required by the TAP modules
#   perl                             prove, the TAP test runner
#   libzstd-dev                      zstd compression of dump archives
#   zstd                             the command-line tool that opens them
#                                    (tar --zstd), used by tests and DBAs
#   openssl                          a test CA and certificate for TLS tests
#   make gcc                         the build
#   clang-14 libclang-rt-14-dev      libFuzzer and the sanitizers' runtimes,
#                                    for the fuzz targets (bench/fuzz; the
#                                    test suite runs them briefly)
SYNC_PACKAGES="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
libcurl4-openssl-dev nginx-light libipc-run-perl perl libzstd-dev zstd \
openssl make gcc clang-14 libclang-rt-14-dev"

log() { printf '%s\n' "== $*" >&2; }
die() { printf '%s\n' "error: $*" >&2; exit 1; }

# Run a command as the user that owns the servers.
as_runner() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "$SYNC_TEST_USER" -- "$@"
	else
		"$@"
	fi
}

# Install whatever of SYNC_PACKAGES is missing (root), or say what to
# install (anyone else).
install_packages() {
	local missing="" p
	for p in $SYNC_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		die "missing packages:$missing (install them as root: apt-get install$missing)"
	fi
	log "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq </dev/null >/dev/null || die "apt-get update failed"
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing </dev/null >/dev/null ||
		die "apt-get install$missing failed"
}

# Build and install the extension; sets PG_CONFIG, PGBIN, PGXS_DIR.
build_and_install() {
	PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
	[ -x "$PG_CONFIG" ] || die "$PG_CONFIG not found"
	PGXS_DIR=$(dirname "$(dirname "$("$PG_CONFIG" --pgxs)")")
	log "building"
	make -s -C "$SYNC_ROOT" PG_CONFIG="$PG_CONFIG" >/dev/null || die "build failed"

	local libdir sharedir
	libdir=$("$PG_CONFIG" --pkglibdir)
	sharedir=$("$PG_CONFIG" --sharedir)
	if [ -w "$libdir" ] && [ -w "$sharedir/extension" ]; then
		log "installing into $libdir"
		make -s -C "$SYNC_ROOT" PG_CONFIG="$PG_CONFIG" install >/dev/null ||
			die "make install failed"
		PGBIN=$("$PG_CONFIG" --bindir)
	else
		# A private copy of the installation: the server finds its share
		# and lib directories relative to its own binary.
		local inst=$SYNC_WORK/install bindir
		bindir=$("$PG_CONFIG" --bindir)
		log "installing into a private copy under $inst"
		mkdir -p "$inst$(dirname "$bindir")" "$inst$(dirname "$sharedir")"
		cp -a "$(dirname "$bindir")/." "$inst$(dirname "$bindir")/"
		cp -a "$sharedir" "$inst$(dirname "$sharedir")/"
		make -s -C "$SYNC_ROOT" PG_CONFIG="$PG_CONFIG" DESTDIR="$inst" install >/dev/null ||
			die "make install failed"
		PGBIN=$inst$bindir
	fi
}

# Everything: packages, a scratch directory, build, install.  Leaves
# SYNC_WORK (removed by the caller's trap) owned by the runner.
sync_setup() {
	install_packages
	SYNC_WORK=$(mktemp -d "${TMPDIR:-/tmp}/sync-work.XXXXXX") || die "mktemp failed"
	build_and_install
	# test material, readable and writable by the runner
	mkdir -p "$SYNC_WORK/src"
	cp -a "$SYNC_ROOT/sql" "$SYNC_ROOT/expected" "$SYNC_ROOT/test" "$SYNC_WORK/src/"
	if [ "$(id -u)" = 0 ]; then
		id "$SYNC_TEST_USER" >/dev/null 2>&1 || die "user $SYNC_TEST_USER does not exist"
		chown -R "$SYNC_TEST_USER" "$SYNC_WORK"
	fi
	export PATH="$PGBIN:$PATH"
}

# Start nginx as the test user, on 127.0.0.1, serving directory $2 at /,
# with its files under $1; sets nginx_port.  Tries a few random ports (a
# bounded number of times) until one is free.  stop_nginx $1 stops it.
start_nginx() {
	local prefix=$1 root=$2 try
	as_runner mkdir -p "$prefix/tmp"
	for try in 1 2 3 4 5 6 7 8 9 10; do
		nginx_port=$(( 20000 + RANDOM % 20000 ))
		cat >"$prefix.conf.tmp" <<NGINX
daemon on;
worker_processes 1;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $prefix/tmp/body;
	proxy_temp_path $prefix/tmp/proxy;
	fastcgi_temp_path $prefix/tmp/fastcgi;
	uwsgi_temp_path $prefix/tmp/uwsgi;
	scgi_temp_path $prefix/tmp/scgi;
	sendfile on;
	server { listen 127.0.0.1:$nginx_port; root $root; }
}
NGINX
		as_runner cp "$prefix.conf.tmp" "$prefix/nginx.conf"
		rm -f "$prefix.conf.tmp"
		if as_runner /usr/sbin/nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" 2>/dev/null; then
			return 0
		fi
	done
	die "nginx did not start (see $prefix/error.log)"
}

stop_nginx() {
	local prefix=$1
	[ -f "$prefix/nginx.pid" ] || return 0
	as_runner /usr/sbin/nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -s stop 2>/dev/null
}
