/*-------------------------------------------------------------------------
 *
 * sync.h
 *		Declarations shared by the source files of the sync extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_H
#define SYNC_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/jsonb.h"
#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"
#include "storage/lockdefs.h"
#include "utils/rel.h"
#include "utils/snapshot.h"

/* version of the extension's SQL objects, as in sync.control */
#define SYNC_EXTENSION_VERSION "0.1"

/* name of the index file beside the archives in the dump directory */
#define SYNC_INDEX_NAME "sync-index.json"

/*
 * SQL of the join condition of a foreign key constraint c (a pg_constraint
 * row) between child alias ca and parent alias pa, with the constraint's
 * own equality operators (so it works for any type, whatever search_path).
 */
#define SYNC_FK_JOIN_SQL(ca, pa) \
	"(SELECT pg_catalog.string_agg(pg_catalog.format('" ca ".%I OPERATOR(%I.%s) " pa ".%I'," \
	"         a1.attname, opn.nspname, op.oprname, a2.attname), ' AND ' ORDER BY k.i)" \
	"    FROM ROWS FROM (pg_catalog.unnest(c.conkey), pg_catalog.unnest(c.confkey)," \
	"                    pg_catalog.unnest(c.conpfeqop)) WITH ORDINALITY AS k(ck, pk, eqop, i)" \
	"    JOIN pg_catalog.pg_attribute a1 ON a1.attrelid = c.conrelid AND a1.attnum = k.ck" \
	"    JOIN pg_catalog.pg_attribute a2 ON a2.attrelid = c.confrelid AND a2.attnum = k.pk" \
	"    JOIN pg_catalog.pg_operator op ON op.oid = k.eqop" \
	"    JOIN pg_catalog.pg_namespace opn ON opn.oid = op.oprnamespace)"

/* settings */
extern char *sync_dump_directory;
extern char *sync_work_directory;
extern int	sync_max_download_kb;
extern int	sync_connect_timeout;
extern int	sync_timeout;
extern int	sync_max_redirects;
extern int	sync_registry_authority;
extern char *sync_database;
extern int	sync_max_workers;
extern int	sync_log_retention;
extern bool sync_preloaded;
extern int64 sync_current_job;

/* schedule.c */
extern void SyncScheduleInit(void);

/* One machine's owned key range, inclusive at both ends. */
typedef struct SyncRange
{
	int64		start;
	int64		end;
} SyncRange;

/* sync.c: entry points and helpers for running SQL through SPI */
extern void SyncEnter(FunctionCallInfo fcinfo);
extern void SyncUseSchema(Oid nsp);
extern void SyncWorkerInit(BackgroundWorker *worker, const char *function,
						   const char *type, int restart_time);
extern char *SyncObject(const char *name);
extern Oid	SyncSchemaOid(void);
extern Oid	SyncRelationOwner(Oid relid);
extern int	SyncPinSettings(bool data_formats);
extern void SyncWorkerBegin(bool pin);
extern void SyncWorkerCommit(void);
extern ErrorData *SyncRunInSubtransaction(void (*body) (void *),
										  void (*cleanup) (void *), void *arg);
extern int64 SyncMachineIdArg(FunctionCallInfo fcinfo, int argno);
extern char *SyncRelationName(Oid relid);
extern int	SyncExecute(const char *sql, int nargs, Oid *argtypes,
						Datum *values, const char *nulls);
extern int	SyncExecuteSnapshot(const char *sql, int nargs, Oid *argtypes,
								Datum *values, const char *nulls,
								Snapshot snapshot);
extern bool SyncGetInt64(int row, int col, int64 *value);
extern char *SyncGetText(int row, int col);
extern Oid	SyncGetOid(int row, int col);
extern Datum SyncReturnRow(int row);

/* registry.c: machines and the local identity */
extern bool SyncLookupRange(int64 machine_id, SyncRange *range);
extern bool SyncLocalMachine(int64 *machine_id, SyncRange *range);

/* tables.c: registered tables */
extern int	SyncRegisteredTables(LOCKMODE lockmode, Oid **relids, char ***keys);
extern AttrNumber SyncKeyColumn(Relation rel);
extern void SyncCheckNoRowsLeft(int64 machine_id, const SyncRange *old_range,
								const SyncRange *new_range,
								int64 new_machine_id);

/* sequences.c: confining key sequences to the local range */
extern void SyncConfineTableSequences(Oid relid, const char *key_column,
									  const SyncRange *range);
extern void SyncConfineAllSequences(const SyncRange *range);
extern int64 SyncCountKeys(Oid relid, const char *key_column,
						   const SyncRange *range, const SyncRange *except);

/* expr.c: validating filter and anonymize expressions */
typedef struct SyncAnonymizedColumn
{
	char	   *column;			/* column name */
	char	   *sql;			/* SQL of its published value */
} SyncAnonymizedColumn;

extern char *SyncFilterSql(Relation rel, const char *filter, const char *alias);
extern List *SyncAnonymizeSql(Relation rel, AttrNumber key_attnum,
							  Jsonb *rules, const char *alias);

#endif							/* SYNC_H */
