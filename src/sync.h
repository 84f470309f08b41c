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
#include "utils/rel.h"

/* One machine's owned key range, inclusive at both ends. */
typedef struct SyncRange
{
	int64		start;
	int64		end;
} SyncRange;

/* sync.c: entry points and helpers for running SQL through SPI */
extern void SyncEnter(FunctionCallInfo fcinfo);
extern char *SyncObject(const char *name);
extern char *SyncRelationName(Oid relid);
extern int	SyncExecute(const char *sql, int nargs, Oid *argtypes,
						Datum *values, const char *nulls, bool read_only);
extern bool SyncGetInt64(int row, int col, int64 *value);
extern char *SyncGetText(int row, int col);
extern Oid	SyncGetOid(int row, int col);
extern Datum SyncReturnRow(int row);

/* registry.c: machines and the local identity */
extern bool SyncLookupRange(int64 machine_id, SyncRange *range);
extern bool SyncLocalMachine(int64 *machine_id, SyncRange *range);

/* tables.c: registered tables */
extern int	SyncRegisteredTables(Oid **relids, char ***keys);
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
extern void SyncValidateFilter(Relation rel, const char *filter);
extern void SyncValidateAnonymize(Relation rel, AttrNumber key_attnum,
								  Jsonb *rules);

#endif							/* SYNC_H */
