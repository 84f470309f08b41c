/*-------------------------------------------------------------------------
 *
 * helpers.h
 *		The ground floor: small helpers that every other file of the sync
 *		extension uses, and that use nothing of the extension themselves.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_HELPERS_H
#define SYNC_HELPERS_H

#include "postgres.h"

#include "fmgr.h"
#include "postmaster/bgworker.h"
#include "utils/snapshot.h"

#include "parse.h"

/* version of the extension's SQL objects, as in sync.control */
#define SYNC_EXTENSION_VERSION "0.6"

/*
 * Advisory locks (first key; the second says which object): one dump at a
 * time per database, one pull of a machine at a time.
 */
#define SYNC_LOCK_DUMP 1937337955
#define SYNC_LOCK_PULL 1937337956

/* A piece of work handed to a helper that runs it in some context. */
typedef void (*SyncBody) (void *arg);

/* names of the extension's objects */
extern void SyncEnter(FunctionCallInfo fcinfo);
extern bool SyncVersionMatches(void);
extern void SyncCheckVersion(void);
extern void SyncUseSchema(Oid nsp);
extern Oid	SyncSchemaOid(void);
extern char *SyncObject(const char *name);
extern char *SyncRelationName(Oid relid);
extern Oid	SyncRelationOwner(Oid relid);
extern void SyncCheckTableOwner(Oid relid);
extern int64 SyncMachineIdArg(FunctionCallInfo fcinfo, int argno);

/* running SQL */
extern int	SyncExecute(const char *sql, int nargs, Oid *argtypes,
						Datum *values, const char *nulls);
extern int	SyncExecuteSnapshot(const char *sql, int nargs, Oid *argtypes,
								Datum *values, const char *nulls,
								Snapshot snapshot);
extern bool SyncGetInt64(int row, int col, int64 *value);
extern char *SyncGetText(int row, int col);
extern List *SyncGetTextList(int row, int col);
extern void SyncSetOfOids(FunctionCallInfo fcinfo);
extern Oid	SyncGetOid(int row, int col);
extern bool SyncGetBool(int row, int col);
extern Datum SyncReturnRow(int row);
extern Datum SyncResultRow(FunctionCallInfo fcinfo, Datum *values, bool *nulls);

/* A statement with its arguments, to run as a SyncBody; rows: its result. */
typedef struct SyncStatement
{
	const char *sql;
	int			nargs;
	Oid		   *argtypes;
	Datum	   *values;
	const char *nulls;
	int			rows;
	Snapshot	snapshot;		/* every query sees it, if set */
} SyncStatement;

extern void SyncExecuteStatement(void *statement);
extern int	SyncExecuteAs(Oid role, const char *sql, int nargs, Oid *argtypes,
						  Datum *values, const char *nulls);

/* settings, roles, subtransactions */
extern int	SyncPinSettings(bool data_formats);
extern int	SyncPinInputSettings(const char *session_path);
extern void SyncRunAs(Oid role, SyncBody body, void *arg);
extern ErrorData *SyncRunInSubtransaction(SyncBody body, SyncBody cleanup,
										  void *arg);
extern ErrorData *SyncRunAndUndo(SyncBody body, SyncBody cleanup, void *arg);

/* background workers */
extern void SyncWorkerInit(BackgroundWorker *worker, const char *function,
						   const char *type, int restart_time);
extern void SyncWorkerBegin(bool pin);
extern void SyncWorkerCommit(void);

#endif							/* SYNC_HELPERS_H */
