/*-------------------------------------------------------------------------
 *
 * log.c
 *		Recording every dump and pull in sync_log.
 *
 * A failed pull or dump rolls back, and a row inserted by the failing
 * transaction would roll back with it.  So the row is written by a
 * short-lived background worker in a transaction of its own (an
 * autonomous transaction), connected to the same database as the owner of
 * sync_log; the caller waits until it is done.  Successful runs are
 * recorded the same way, so a log row never depends on what the caller's
 * transaction does afterwards.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "log.h"
#include "sync.h"

PGDLLEXPORT void sync_log_worker_main(Datum main_arg);

/*
 * The columns of sync_log that a log row fills, with the expression that
 * turns the text parameter into the column's value.  Timestamps travel as
 * microseconds since 2000-01-01 UTC, independent of DateStyle and TimeZone.
 */
#define AS_TIMESTAMPTZ(n) "(timestamptz '2000-01-01 00:00:00+00' + $" #n "::pg_catalog.int8 * interval '1 microsecond')"
static const struct
{
	const char *name;
	const char *value;
}			log_columns[] =
{
	{"kind", "$1"},
	{"machine_id", "$2::pg_catalog.int8"},
	{"job_id", "$3::pg_catalog.int8"},
	{"started_at", AS_TIMESTAMPTZ(4)},
	{"finished_at", AS_TIMESTAMPTZ(5)},
	{"status", "$6"},
	{"tables", "$7::pg_catalog.int4"},
	{"rows", "$8::pg_catalog.int8"},
	{"excluded", "$9::pg_catalog.int8"},
	{"inserted", "$10::pg_catalog.int8"},
	{"updated", "$11::pg_catalog.int8"},
	{"deleted", "$12::pg_catalog.int8"},
	{"bytes", "$13::pg_catalog.int8"},
	{"message", "$14"},
	{"details", "$15::pg_catalog.jsonb"},
};

#define LOG_NCOLUMNS ((int) lengthof(log_columns))

/* longest message kept; longer ones are cut */
#define LOG_MAX_MESSAGE 8000

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

/*
 * An entry with nothing filled in but its kind.
 */
void
SyncLogInit(SyncLogEntry *entry, const char *kind)
{
	memset(entry, 0, sizeof(*entry));
	entry->kind = kind;
	entry->machine_id = -1;
	entry->job_id = -1;
	entry->tables = entry->rows = entry->excluded = -1;
	entry->inserted = entry->updated = entry->deleted = entry->bytes = -1;
	entry->started_at = GetCurrentTimestamp();
}

/* The entry's values as text, in log_columns order (NULL for NULL). */
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
	values[13] = entry->message;
	if (values[13] && strlen(values[13]) > LOG_MAX_MESSAGE)
		values[13] = pnstrdup(values[13], pg_mbcliplen(values[13], strlen(values[13]), LOG_MAX_MESSAGE));
	values[14] = entry->details;
#undef INT_OR_NULL
}

/*
 * Insert one log row in the current transaction.  The caller is connected
 * to SPI; log_relid names sync_log.
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
		appendStringInfo(&sql, "%s%s", i ? ", " : "", log_columns[i].value);
		argtypes[i] = TEXTOID;
		args[i] = values[i] ? CStringGetTextDatum(values[i]) : (Datum) 0;
		nulls[i] = values[i] ? ' ' : 'n';
	}
	appendStringInfoChar(&sql, ')');
	SyncExecute(sql.data, LOG_NCOLUMNS, argtypes, args, nulls);
}

/*
 * Record a log row in a transaction of its own, through a background
 * worker.  If no worker can be started, the row is written in the current
 * transaction instead, with a WARNING (it is lost if that transaction
 * rolls back).  Never called inside an aborted transaction.
 */
void
SyncLogWrite(const SyncLogEntry *entry)
{
	const char *values[LOG_NCOLUMNS];
	Oid			log_relid;
	Size		size = offsetof(LogShared, data);
	dsm_segment *seg;
	LogShared  *shared;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	char	   *p;
	int			i;

	EntryValues(entry, values);
	log_relid = get_relname_relid("sync_log", SyncSchemaOid());
	if (!OidIsValid(log_relid))
		elog(ERROR, "table sync_log of extension sync is missing");

	for (i = 0; i < LOG_NCOLUMNS; i++)
		if (values[i])
			size += strlen(values[i]) + 1;
	seg = dsm_create(size, 0);
	shared = dsm_segment_address(seg);
	shared->database = MyDatabaseId;
	shared->role = SyncRelationOwner(log_relid);
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

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "sync");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "sync_log_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "sync log writer for PID %d", MyProcPid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "sync log writer");
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a worker to record the %s in sync_log", entry->kind),
				 errdetail("The row is written in the current transaction instead, and is lost if it rolls back."),
				 errhint("Raise max_worker_processes.")));
		SPI_connect();
		InsertLogRow(log_relid, values);
		SPI_finish();
		dsm_detach(seg);
		return;
	}
	status = WaitForBackgroundWorkerShutdown(handle);
	if (status != BGWH_STOPPED || !shared->done)
		ereport(WARNING,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not record the %s in sync_log", entry->kind),
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

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "recording a sync_log entry");
	InsertLogRow(shared->log_relid, values);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	shared->done = true;
	dsm_detach(seg);
	proc_exit(0);
}
