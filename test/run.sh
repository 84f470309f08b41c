#!/bin/bash
# test/run.sh: the whole test suite of sync.
#
# Installs what is missing (as root), builds, installs, then runs
#   1. the pg_regress tests (sql/*.sql against expected/*.out) on a
#      temporary instance, and
#   2. the TAP tests in test/t/, each starting its own clusters (and, where
#      needed, nginx on 127.0.0.1), and
#   3. the demo of README's Quick start (test/demo.sh), and
#   4. a 30-second run of the fuzz targets (bench/fuzz --smoke), and
#   5. a short federation simulation with a fixed seed (test/simulate.sh).
# Ends with "N passed, N failed" alone on the last line; exits non-zero on
# any failure.  Set SYNC_KEEP_WORK=1 to keep the scratch directory, and
# SYNC_ONLY=<name> to run only the TAP tests whose file name contains it
# (no pg_regress, no demo, no fuzzing) while working on them.
set -u
. "$(dirname "$0")/lib.sh"

cleanup() {
	if [ -n "${SYNC_TEST_SMALLFS:-}" ]; then
		umount "$SYNC_TEST_SMALLFS" 2>/dev/null
	fi
	if [ -n "${SYNC_WORK:-}" ] && [ -z "${SYNC_KEEP_WORK:-}" ]; then
		rm -rf "$SYNC_WORK"
	fi
}
trap cleanup EXIT

sync_setup

passed=0
failed=0
skipped=0
src=$SYNC_WORK/src

# As root, a tiny file system for the disk-full tests (the TAP tests skip
# them, visibly, where none can be mounted).
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$SYNC_WORK/smallfs"
	if mount -t tmpfs -o "size=512k,mode=0755,uid=$(id -u "$SYNC_TEST_USER")" \
		tmpfs "$SYNC_WORK/smallfs" 2>/dev/null; then
		export SYNC_TEST_SMALLFS=$SYNC_WORK/smallfs
	fi
fi

# 1. pg_regress on a temporary instance
tests=$(sed -n 's/^REGRESS = //p' "$SYNC_ROOT/Makefile")
[ -n "${SYNC_ONLY:-}" ] && tests=""
if [ -n "$tests" ]; then
log "pg_regress: $tests"
mkdir -p "$SYNC_WORK/regress"
[ "$(id -u)" = 0 ] && chown "$SYNC_TEST_USER" "$SYNC_WORK/regress"
# shellcheck disable=SC2086
as_runner env PATH="$PATH" TMPDIR="$SYNC_WORK" "$PGXS_DIR/test/regress/pg_regress" \
	--temp-instance="$SYNC_WORK/regress/tmp_check" \
	--temp-config="$src/test/regress.conf" \
	--bindir="$PGBIN" \
	--inputdir="$src" \
	--outputdir="$SYNC_WORK/regress" \
	--dbname=contrib_regression \
	$tests >"$SYNC_WORK/regress/run.log" 2>&1
cat "$SYNC_WORK/regress/run.log"
n=$(grep -Ec '\.\.\. ok' "$SYNC_WORK/regress/run.log")
f=$(grep -Ec '\.\.\. (FAILED|failed)' "$SYNC_WORK/regress/run.log")
expected=$(echo "$tests" | wc -w)
if [ $((n + f)) -lt "$expected" ]; then
	f=$((expected - n))
	log "pg_regress did not run every test"
fi
passed=$((passed + n))
failed=$((failed + f))
if [ "$f" -gt 0 ] && [ -f "$SYNC_WORK/regress/regression.diffs" ]; then
	cat "$SYNC_WORK/regress/regression.diffs"
fi
fi

# 2. TAP tests, one prove run per file so that a script that dies counts
for t in "$src"/test/t/*.pl; do
	[ -e "$t" ] || continue
	case "$t" in *"${SYNC_ONLY:-}"*) ;; *) continue ;; esac
	name=$(basename "$t" .pl)
	log "TAP: $name"
	tapdir=$SYNC_WORK/tap/$name
	mkdir -p "$tapdir"
	[ "$(id -u)" = 0 ] && chown -R "$SYNC_TEST_USER" "$SYNC_WORK/tap"
	as_runner env PATH="$PATH" TMPDIR="$SYNC_WORK" \
		PERL5LIB="$PGXS_DIR/test/perl:$src/test/lib" \
		PG_REGRESS="$PGXS_DIR/test/regress/pg_regress" \
		TESTDIR="$tapdir" SYNC_SRC="$src" SYNC_TEST_SMALLFS="${SYNC_TEST_SMALLFS:-}" \
		prove -v "$t" >"$tapdir/prove.log" 2>&1
	rc=$?
	cat "$tapdir/prove.log"
	n=$(grep -E '^ok [0-9]+' "$tapdir/prove.log" | grep -Evc '# skip')
	s=$(grep -E '^ok [0-9]+' "$tapdir/prove.log" | grep -Ec '# skip')
	f=$(grep -Ec '^not ok [0-9]+' "$tapdir/prove.log")
	if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
		f=1
	fi
	if [ "$rc" != 0 ]; then
		# the servers' logs say why
		for l in "$tapdir"/tmp_check/log/*.log; do
			[ -e "$l" ] || continue
			echo "---- $l (last 40 lines)"
			tail -n 40 "$l"
		done
	fi
	passed=$((passed + n))
	failed=$((failed + f))
	skipped=$((skipped + s))
done

# 3. the README's demo still runs
if [ -n "${SYNC_ONLY:-}" ]; then
	:
else
log "demo: test/demo.sh"
if bash "$SYNC_ROOT/test/demo.sh" >"$SYNC_WORK/demo.log" 2>&1; then
	echo "ok - demo (test/demo.sh) ran to the end"
	passed=$((passed + 1))
else
	cat "$SYNC_WORK/demo.log"
	echo "not ok - demo (test/demo.sh) failed"
	failed=$((failed + 1))
fi
fi

# 4. the fuzz targets, briefly (bench/fuzz runs them for longer)
if [ -z "${SYNC_ONLY:-}" ]; then
log "fuzz: bench/fuzz --smoke"
bash "$SYNC_ROOT/bench/fuzz" --smoke >"$SYNC_WORK/fuzz.log" 2>&1
cat "$SYNC_WORK/fuzz.log"
n=$(grep -Ec '^ok - fuzz_' "$SYNC_WORK/fuzz.log")
f=$(grep -Ec '^not ok - fuzz_' "$SYNC_WORK/fuzz.log")
if [ $((n + f)) -lt 2 ]; then
	f=$((2 - n))
	log "the fuzz targets did not all run"
fi
passed=$((passed + n))
failed=$((failed + f))
fi

# 5. a short federation simulation with a fixed seed (test/simulate.sh; the
#    README says how a long one went)
if [ -z "${SYNC_ONLY:-}" ]; then
log "simulation: test/simulate.sh --machines 3 --rounds 15 --seed 1"
if bash "$SYNC_ROOT/test/simulate.sh" --machines 3 --rounds 15 --seed 1 >"$SYNC_WORK/simulate.log" 2>&1; then
	tail -n 3 "$SYNC_WORK/simulate.log"
	echo "ok - simulation: $(tail -n 1 "$SYNC_WORK/simulate.log")"
	passed=$((passed + 1))
else
	cat "$SYNC_WORK/simulate.log"
	echo "not ok - simulation failed"
	failed=$((failed + 1))
fi
fi

if [ $((passed + failed)) = 0 ]; then
	log "no test ran"
	failed=1
fi
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ]
