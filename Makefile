# Makefile for the sync extension (PGXS).
#
#   make                    build sync.so
#   make install            install into the PostgreSQL named by PG_CONFIG
#   make installcheck       run the pg_regress suite against a running server
#
# The whole suite (pg_regress on a temporary instance plus the TAP tests)
# is run by test/run.sh; see README.md.

EXTENSION = sync
MODULE_big = sync
OBJS = \
	src/parse.o \
	src/unpack.o \
	src/helpers.o \
	src/settings.o \
	src/progress.o \
	src/archive.o \
	src/log.o \
	src/format.o \
	src/chain.o \
	src/fkeys.o \
	src/registry.o \
	src/sequences.o \
	src/expr.o \
	src/keys.o \
	src/guard.o \
	src/tables.o \
	src/identity.o \
	src/remote.o \
	src/fetch.o \
	src/closure.o \
	src/load.o \
	src/digest.o \
	src/dump.o \
	src/merge.o \
	src/reach.o \
	src/conflict.o \
	src/apply.o \
	src/pull.o \
	src/push.o \
	src/schedule.o \
	src/module.o

DATA = sql/sync--0.1.sql sql/sync--0.2.sql sql/sync--0.3.sql sql/sync--0.4.sql sql/sync--0.5.sql sql/sync--0.6.sql \
	sql/sync--0.1--0.2.sql sql/sync--0.2--0.3.sql sql/sync--0.3--0.4.sql sql/sync--0.4--0.5.sql sql/sync--0.5--0.6.sql
DOCS =

# pg_regress inputs live in sql/ beside the extension scripts; the scripts
# are named sync--*.sql, the tests are listed here.
REGRESS = registry identity tables sequences privileges guard dump upgrade
REGRESS_OPTS = --inputdir=.

# -Wunused-parameter is off: PostgreSQL's own headers (ilist.h, bufpage.h) trip it.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

PG_CONFIG ?= pg_config
SHLIB_LINK += -lzstd -lcurl

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track header dependencies: every object depends on every
# header, so a changed struct never leaves a stale object behind.
$(OBJS): $(wildcard src/*.h)
