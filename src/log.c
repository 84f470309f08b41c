/*-------------------------------------------------------------------------
 *
 * log.c
 *		sync_log: recording every dump, pull and scheduled run, and pruning
 *		old rows.  No other file writes it.
 *
 * A failed pull or dump rolls back, and a row inserted by the failing
 * transaction would roll back with it.  So the row is written by a
 * short-lived background worker in a transaction of its own (an
 * autonomous transaction), connected to the same database as the owner of
 * sync_log; the caller waits until it is done.  A dump, whose files are
 * published at once, is recorded the same way.  A successful pull is
 * recorded in the caller's transaction instead: it is in the log exactly
 * if what it applied committed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/syscache.h"
#include "utils/jsonb.h"
#include "utils/resowner.h"

#include "helpers.h"
#include "log.h"

PGDLLEXPORT void sync_log_worker_main(Datum main_arg);

/* The columns of sync_log that a log row fills, and their types. */
static const struct
{
	const char *name;
	Oid			type;
}			log_columns[] =
{
	{"kind", TEXTOID},
	{"machine_id", INT8OID},
	{"job_id", INT8OID},
	{"started_at", TIMESTAMPTZOID},
	{"finished_at", TIMESTAMPTZOID},
	{"status", TEXTOID},
	{"tables", INT4OID},
	{"rows", INT8OID},
	{"excluded", INT8OID},
	{"inserted", INT8OID},
	{"updated", INT8OID},
	{"deleted", INT8OID},
	{"bytes", INT8OID},
	{"message", TEXTOID},
	{"details", JSONBOID},
	{"local_changed", INT8OID},
	{"sqlstate", TEXTOID},
	{"detail", TEXTOID},
	{"hint", TEXTOID},
	{"context", TEXTOID},
};

#define LOG_NCOLUMNS ((int) lengthof(log_columns))

/* longest message kept; longer ones are cut */
#define LOG_MAX_MESSAGE 8000

/* how long a caller waits for the log writer */
#define LOG_WAIT_MS 30000

/*
 * What the caller hands to the worker: where to write, and the row's
 * values as text (offsets into data, -1 for NULL).
 */
typedef struct LogShared
{
	Oid			database;
	Oid			role;
	Oid			log_relid;
	bool		done;			/* set by the worker once committed */
	int			offsets[LOG_NCOLUMNS];
	char		data[FLEXIBLE_ARRAY_MEMBER];
} LogShared;

/* entries this process wrote or tried to write; see log.h */
uint64		sync_log_writes = 0;

/* in a job worker, the job being run; see log.h */
int64		sync_current_job = -1;

/*
 * An entry with nothing filled in but its kind.
 */
void
SyncLogInit(SyncLogEntry *entry, const char *kind)
{
	memset(entry, 0, sizeof(*entry));
	entry->kind = kind;
	entry->machine_id = -1;
	entry->tables = entry->rows = entry->excluded = -1;
	entry->inserted = entry->updated = entry->deleted = entry->bytes = -1;
	entry->local_changed = -1;
	entry->job_id = sync_current_job;
	entry->started_at = GetCurrentTimestamp();
}

/* A message, detail, hint or context as kept: at most LOG_MAX_MESSAGE bytes. */
static const char *
Clip(const char *text)
{
	if (text == NULL || strlen(text) <= LOG_MAX_MESSAGE)
		return text;
	return pnstrdup(text, pg_mbcliplen(text, strlen(text), LOG_MAX_MESSAGE));
}

/*
 * The entry's values as text, in log_columns order (NULL for NULL);
 * timestamps as microseconds since 2000-01-01 UTC.
 */
static void
EntryValues(const SyncLogEntry *entry, const char **values)
{
#define INT_OR_NULL(v) ((v) < 0 ? NULL : psprintf(INT64_FORMAT, (int64) (v)))
	values[0] = entry->kind;
	values[1] = INT_OR_NULL(entry->machine_id);
	values[2] = INT_OR_NULL(entry->job_id);
	values[3] = psprintf(INT64_FORMAT, (int64) entry->started_at);
	values[4] = entry->finished_at ? psprintf(INT64_FORMAT, (int64) entry->finished_at) : NULL;
	values[5] = entry->status;
	values[6] = INT_OR_NULL(entry->tables);
	values[7] = INT_OR_NULL(entry->rows);
	values[8] = INT_OR_NULL(entry->excluded);
	values[9] = INT_OR_NULL(entry->inserted);
	values[10] = INT_OR_NULL(entry->updated);
	values[11] = INT_OR_NULL(entry->deleted);
	values[12] = INT_OR_NULL(entry->bytes);
	values[13] = Clip(entry->message);
	values[14] = entry->details;
	values[15] = INT_OR_NULL(entry->local_changed);
	values[16] = entry->sqlstate;
	values[17] = Clip(entry->detail);
	values[18] = Clip(entry->hint);
	values[19] = Clip(entry->context);
#undef INT_OR_NULL
}

/*
 * Insert one log row in the current transaction.  The caller is connected
 * to SPI; log_relid names sync_log.  Values are bound with their own types
 * and the statement names nothing but the table, so no operator or function
 * a user created can take part.
 */
static void
InsertLogRow(Oid log_relid, const char **values)
{
	StringInfoData sql;
	Oid			argtypes[LOG_NCOLUMNS];
	Datum		args[LOG_NCOLUMNS];
	char		nulls[LOG_NCOLUMNS];
	int			i;

	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (", SyncRelationName(log_relid));
	for (i = 0; i < LOG_NCOLUMNS; i++)
		appendStringInfo(&sql, "%s%s", i ? ", " : "",
						 quote_identifier(log_columns[i].name));
	appendStringInfoString(&sql, ") VALUES (");
	for (i = 0; i < LOG_NCOLUMNS; i++)
	{
		const char *v = values[i];

		appendStringInfo(&sql, "%s$%d", i ? ", " : "", i + 1);
		argtypes[i] = log_columns[i].type;
		nulls[i] = v ? ' ' : 'n';
		args[i] = (Datum) 0;
		if (v == NULL)
			continue;
		switch (log_columns[i].type)
		{
			case INT8OID:
			case TIMESTAMPTZOID:
				args[i] = Int64GetDatum(strtoi64(v, NULL, 10));
				break;
			case INT4OID:
				args[i] = Int32GetDatum((int32) strtol(v, NULL, 10));
				break;
			case JSONBOID:
				args[i] = DirectFunctionCall1(jsonb_in, CStringGetDatum(v));
				break;
			default:
				args[i] = CStringGetTextDatum(v);
		}
	}
	appendStringInfoChar(&sql, ')');
	SyncExecute(sql.data, LOG_NCOLUMNS, argtypes, args, nulls);
}

/* A row to insert, for InsertBody. */
typedef struct LogInsert
{
	Oid			log_relid;
	const char **values;
} LogInsert;

static void
InsertBody(void *arg)
{
	LogInsert  *li = (LogInsert *) arg;

	SPI_connect();
	InsertLogRow(li->log_relid, li->values);
	SPI_finish();
}

/* Insert the row as the log's owner (the caller need not be allowed to). */
static void
InsertAsOwnerBody(void *arg)
{
	LogInsert  *li = (LogInsert *) arg;

	SyncRunAs(SyncRelationOwner(li->log_relid), InsertBody, li);
}

/*
 * Write the row in the caller's transaction, as the log's owner, in a
 * subtransaction: a failure here becomes a WARNING and never hides the
 * caller's own error.
 */
static void
InsertInCallerTransaction(Oid log_relid, const char **values)
{
	LogInsert	li = {log_relid, values};
	ErrorData  *edata;

	edata = SyncRunInSubtransaction(InsertAsOwnerBody, NULL, &li);
	if (edata)
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("could not record the %s in sync_log: %s", values[0], edata->message)));
}

/*
 * The role the log writer connects as: the log's owner, or the bootstrap
 * superuser if the owner may not log in.
 */
static Oid
WriterRole(Oid owner)
{
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(owner));
	bool		canlogin = false;

	if (HeapTupleIsValid(tup))
	{
		canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
		ReleaseSysCache(tup);
	}
	return canlogin ? owner : BOOTSTRAP_SUPERUSERID;
}

/*
 * Record a log row in a transaction of its own, through a background
 * worker, waiting at most LOG_WAIT_MS for it.  If no worker can be
 * started, the row is written in the current transaction instead, with a
 * WARNING (it is lost if that transaction rolls back).  A server in
 * recovery writes nothing.  Never throws for a failure to log; never
 * called inside an aborted transaction.
 */
void
SyncLogWrite(const SyncLogEntry *entry)
{
	const char *values[LOG_NCOLUMNS];
	Oid			log_relid;
	Oid			owner;
	Size		size = offsetof(LogShared, data);
	dsm_segment *seg;
	LogShared  *shared;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	TimestampTz deadline;
	bool		timed_out = false;
	char	   *p;
	int			i;

	if (RecoveryInProgress())
	{
		ereport(WARNING,
				(errmsg("the %s is not recorded in sync_log", entry->kind),
				 errdetail("The server is in recovery and cannot write.")));
		return;
	}

	EntryValues(entry, values);
	log_relid = get_relname_relid("sync_log", SyncSchemaOid());
	if (!OidIsValid(log_relid))
	{
		ereport(WARNING,
				(errmsg("the %s is not recorded: table sync_log is missing", entry->kind)));
		return;
	}
	owner = SyncRelationOwner(log_relid);

	for (i = 0; i < LOG_NCOLUMNS; i++)
		if (values[i])
			size += strlen(values[i]) + 1;
	seg = dsm_create(size, 0);
	shared = dsm_segment_address(seg);
	shared->database = MyDatabaseId;
	shared->role = WriterRole(owner);
	shared->log_relid = log_relid;
	shared->done = false;
	p = shared->data;
	for (i = 0; i < LOG_NCOLUMNS; i++)
	{
		if (values[i] == NULL)
			shared->offsets[i] = -1;
		else
		{
			shared->offsets[i] = p - shared->data;
			strcpy(p, values[i]);
			p += strlen(values[i]) + 1;
		}
	}

	SyncWorkerInit(&worker, "sync_log_worker_main", "sync log writer", BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, "sync log writer for PID %d", MyProcPid);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a worker to record the %s in sync_log", entry->kind),
				 errdetail("The row is written in the current transaction instead, and is lost if it rolls back."),
				 errhint("Raise max_worker_processes.")));
		InsertInCallerTransaction(log_relid, values);
		dsm_detach(seg);
		return;
	}

	/*
	 * Wait for the worker, a bounded time, not to be interrupted: this also
	 * runs while an error is being reported, which a cancel must not replace.
	 */
	HOLD_INTERRUPTS();
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), LOG_WAIT_MS);
	for (;;)
	{
		pid_t		pid;
		BgwHandleStatus status = GetBackgroundWorkerPid(handle, &pid);

		if (status == BGWH_STOPPED || status == BGWH_POSTMASTER_DIED)
			break;
		if (GetCurrentTimestamp() >= deadline)
		{
			TerminateBackgroundWorker(handle);
			timed_out = true;
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	RESUME_INTERRUPTS();

	/* counted once it stays, whatever the caller's transaction does */
	if (shared->done)
		sync_log_writes++;
	else
		ereport(WARNING,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not record the %s in sync_log", entry->kind),
				 timed_out ?
				 errdetail("The log writer did not finish within %d seconds; a lock on sync_log may be held.",
						   LOG_WAIT_MS / 1000) :
				 errhint("The server log of the sync log writer tells why.")));
	dsm_detach(seg);
}

/*
 * Main of the log writer worker: insert the row described in the dynamic
 * shared memory segment, commit, and say so.
 */
void
sync_log_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	LogShared  *shared;
	const char *values[LOG_NCOLUMNS];
	int			i;

	BackgroundWorkerUnblockSignals();
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not map the sync log entry")));
	shared = dsm_segment_address(seg);
	for (i = 0; i < LOG_NCOLUMNS; i++)
		values[i] = shared->offsets[i] < 0 ? NULL : shared->data + shared->offsets[i];

	BackgroundWorkerInitializeConnectionByOid(shared->database, shared->role, 0);

	SyncWorkerBegin(true);
	pgstat_report_activity(STATE_RUNNING, "recording a sync_log entry");
	InsertLogRow(shared->log_relid, values);
	SyncWorkerCommit();
	pgstat_report_activity(STATE_IDLE, NULL);

	shared->done = true;
	dsm_detach(seg);
	proc_exit(0);
}

/*
 * Record a run that failed with edata (status "failed" unless the caller
 * set another), then raise the error again.
 */
void
SyncLogFailure(SyncLogEntry *entry, ErrorData *edata)
{
	entry->finished_at = GetCurrentTimestamp();
	if (entry->status == NULL)
		entry->status = "failed";
	SyncLogSetError(entry, edata);
	SyncLogWrite(entry);
	ReThrowError(edata);
}

/*
 * Fill in what an error says: message, SQLSTATE, detail, hint and context,
 * so that a failure can be diagnosed from sync_log alone.  But sync_log is
 * read by roles that may not read the tables: the detail and context that
 * PostgreSQL itself gives a data or constraint error (class 22 or 23) may
 * quote row values ("Failing row contains", COPY's line), and are left to
 * the server log; sync's own say keys and names only.
 */
void
SyncLogSetError(SyncLogEntry *entry, const ErrorData *edata)
{
	int			class = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
	bool		ours = (edata->filename != NULL && strncmp(edata->filename, "src/", 4) == 0);
	bool		withhold = !ours && (class == ERRCODE_DATA_EXCEPTION ||
									 class == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION);

	entry->message = edata->message ? edata->message : "unknown error";
	entry->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
	entry->detail = (withhold && edata->detail) ?
		"Withheld from sync_log, as it may quote row values; the server log has it." : edata->detail;
	entry->hint = edata->hint;
	entry->context = (withhold || edata->context == NULL || edata->context[0] == '\0') ?
		NULL : edata->context;
}


/*
 * Record a run that succeeded in the caller's transaction (as the log's
 * owner): the row commits with what the run did, or not at all, so the log
 * never reports a change that did not commit.  A failure to write it is a
 * WARNING.
 */
void
SyncLogCommitted(const SyncLogEntry *entry)
{
	const char *values[LOG_NCOLUMNS];
	Oid			log_relid = get_relname_relid("sync_log", SyncSchemaOid());

	/* not counted in sync_log_writes: it stays only if the caller commits */
	if (!OidIsValid(log_relid))
	{
		ereport(WARNING,
				(errmsg("the %s is not recorded: table sync_log is missing", entry->kind)));
		return;
	}
	EntryValues(entry, values);
	InsertInCallerTransaction(log_relid, values);
}

/*
 * Insert an entry in the current transaction, as the current user: for the
 * launcher, whose own transaction is the record.  The caller is connected
 * to SPI, under the extension's schema (SyncUseSchema).
 */
void
SyncLogInsert(const SyncLogEntry *entry)
{
	const char *values[LOG_NCOLUMNS];

	EntryValues(entry, values);
	InsertLogRow(get_relname_relid("sync_log", SyncSchemaOid()), values);
}

/*
 * SQL that deletes the rows of sync_log older than $1 minutes (the
 * launcher keeps it prepared).
 */
char *
SyncLogPruneSql(void)
{
	return psprintf("DELETE FROM %s WHERE started_at < pg_catalog.now() - $1 * interval '1 minute'",
					SyncObject("sync_log"));
}
