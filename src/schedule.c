/*-------------------------------------------------------------------------
 *
 * schedule.c
 *		Scheduled pulls: a launcher background worker, one dynamic worker
 *		per run.
 *
 * With shared_preload_libraries = 'sync', a launcher connects to the
 * database named by sync.database and looks at sync_job twice a second.  A
 * due job starts in a dynamic background worker of its own (at most
 * sync.max_workers at once), connected as the job's owner, which does what
 * sync_pull does, under the job's timeout.  A job never overlaps itself: a
 * run that comes due while the previous one is still going is skipped, and
 * logged as skipped.  After consecutive failures the next runs back off
 * (two, four, at most eight intervals); a success resets that.  Runs that a
 * server restart interrupted are recorded as failed when the launcher
 * starts.  The launcher also prunes sync_log to sync.log_retention.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "log.h"
#include "sync.h"

PG_FUNCTION_INFO_V1(sync_schedule);

PGDLLEXPORT void sync_launcher_main(Datum main_arg);
PGDLLEXPORT void sync_job_worker_main(Datum main_arg);

/* settings */
char	   *sync_database = NULL;
int			sync_max_workers = 2;
int			sync_log_retention = 30 * 24 * 60;	/* minutes */

/* whether the library was loaded by shared_preload_libraries */
bool		sync_preloaded = false;

/* in a job worker: the job being run (the pull logs it), else -1 */
int64		sync_current_job = -1;

/* A run the launcher started. */
typedef struct JobRun
{
	int64		job;
	BackgroundWorkerHandle *handle;
	TimestampTz started;
	int64		timeout_ms;
} JobRun;

#define MAX_RUNS 64
static JobRun runs[MAX_RUNS];
static int	nruns = 0;

/*
 * Define the scheduler's settings, and with shared_preload_libraries
 * register the launcher.
 */
void
SyncScheduleInit(void)
{
	BackgroundWorker worker;

	/*
	 * Only a preloading library may define a setting fixed at server start;
	 * loaded later, the setting is accepted but has no use.
	 */
	DefineCustomStringVariable("sync.database",
							   "Database the sync launcher runs scheduled pulls in.",
							   NULL, &sync_database, "postgres",
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   0, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.max_workers",
							"Most scheduled pulls that run at once.",
							NULL, &sync_max_workers, 2, 1, MAX_RUNS,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("sync.log_retention",
							"How long rows of sync_log are kept.",
							NULL, &sync_log_retention, 30 * 24 * 60, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MIN, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;
	sync_preloaded = true;

	SyncWorkerInit(&worker, "sync_launcher_main", "sync launcher", 5);
	RegisterBackgroundWorker(&worker);
}

/* The length of an interval in seconds, months counted as PostgreSQL does. */
static float8
IntervalSeconds(Datum interval)
{
	return DatumGetFloat8(DirectFunctionCall2(interval_part, CStringGetTextDatum("epoch"),
											  interval));
}

/*
 * Refuse a schedule that could not run as meant, with a message per
 * argument (sync_job's checks say the same for changes made with SQL).
 */
static void
CheckSchedule(Datum *values, const char *nulls)
{
	if (IntervalSeconds(values[1]) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("every must be at least 1 second")));
	if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(values[2])))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_at must be a finite time")));
	if (nulls[3] != 'n' &&
		DatumGetBool(DirectFunctionCall2(timestamp_le, values[3], values[2])))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("end_at must be later than start_at")));
	if (nulls[4] != 'n' && DatumGetInt32(values[4]) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_runs must be at least 1")));
	if (IntervalSeconds(values[5]) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be longer than zero")));
}

/*
 * sync_schedule(remote, every, start_at, end_at, max_runs, timeout,
 *				 enabled) returns the new job's id
 */
Datum
sync_schedule(PG_FUNCTION_ARGS)
{
	int64		remote;
	Oid			argtypes[7] = {INT8OID, INTERVALOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	INT4OID, INTERVALOID, BOOLOID};
	Datum		values[7];
	char		nulls[7] = "       ";
	int64		local_id;
	SyncRange	range;
	int64		job = 0;
	int			i;

	SyncEnter(fcinfo);
	if (!sync_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("scheduled pulls need sync in shared_preload_libraries"),
				 errhint("Add 'sync' to shared_preload_libraries in postgresql.conf, set sync.database, and restart the server.")));
	remote = SyncMachineIdArg(fcinfo, 0);
	for (i = 1; i < 7; i++)
	{
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	if (nulls[1] == 'n' || nulls[5] == 'n' || nulls[6] == 'n' || nulls[2] == 'n')
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("every, start_at, timeout and enabled must not be null")));
	values[0] = Int64GetDatum(remote);
	CheckSchedule(values, nulls);

	SPI_connect();
	if (SyncLocalMachine(&local_id, &range) && local_id == remote)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("machine " INT64_FORMAT " is this server", remote),
				 errdetail("A server pulls only other machines' rows.")));
	if (!SyncLookupRange(remote, &range))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("machine " INT64_FORMAT " is not registered", remote),
				 errhint("Register it with sync_register_machine() first.")));
	SyncExecute(psprintf("INSERT INTO %s (remote, every, start_at, end_at, max_runs, timeout, enabled, next_run)"
						 " VALUES ($1, $2, $3, $4, $5, $6, $7, $3) RETURNING id",
						 SyncObject("sync_job")),
				7, argtypes, values, nulls);
	SyncGetInt64(0, 1, &job);
	SPI_finish();
	PG_RETURN_INT64(job);
}

/*
 * The quoted name of the extension's schema in this database, allocated in
 * cxt, which our SQL then names; NULL if the extension is not installed.
 */
static char *
ExtensionSchema(MemoryContext cxt)
{
	if (SyncExecute("SELECT n.oid, pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e"
					"  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
					" WHERE e.extname = 'sync'", 0, NULL, NULL, NULL) == 0)
		return NULL;
	SyncUseSchema(SyncGetOid(0, 1));
	return MemoryContextStrdup(cxt, SyncGetText(0, 2));
}

/* Stop the runs this launcher started, when it exits. */
static void
StopRuns(int code, Datum arg)
{
	int			i;

	for (i = 0; i < nruns; i++)
		TerminateBackgroundWorker(runs[i].handle);
}

/* Is job running, as far as this launcher knows? */
static bool
JobRunning(int64 job)
{
	int			i;

	for (i = 0; i < nruns; i++)
		if (runs[i].job == job)
			return true;
	return false;
}

/*
 * Forget the runs that ended; stop those long past their timeout (the run
 * enforces it itself; this is for one that cannot).
 */
static void
ReapRuns(void)
{
	int			i = 0;
	TimestampTz now = GetCurrentTimestamp();

	while (i < nruns)
	{
		pid_t		pid;
		BgwHandleStatus status = GetBackgroundWorkerPid(runs[i].handle, &pid);

		if (status == BGWH_STOPPED || status == BGWH_POSTMASTER_DIED)
		{
			pfree(runs[i].handle);
			runs[i] = runs[--nruns];
			continue;
		}
		if (TimestampDifferenceExceeds(runs[i].started, now,
									   (int) Min(runs[i].timeout_ms + 30000, INT_MAX)))
			TerminateBackgroundWorker(runs[i].handle);
		i++;
	}
}

/* Start a run of job in a dynamic worker, connected as owner. */
static bool
StartRun(int64 job, Oid owner, int64 timeout_ms)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	Oid			ids[2] = {MyDatabaseId, owner};
	MemoryContext oldcxt;
	bool		started;

	SyncWorkerInit(&worker, "sync_job_worker_main", "sync job", BGW_NEVER_RESTART);
	snprintf(worker.bgw_name, BGW_MAXLEN, "sync job " INT64_FORMAT, job);
	worker.bgw_main_arg = Int64GetDatum(job);
	memcpy(worker.bgw_extra, ids, sizeof(ids));
	worker.bgw_notify_pid = MyProcPid;
	/* the handle is kept across ticks */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(oldcxt);
	if (!started)
		return false;
	runs[nruns].job = job;
	runs[nruns].handle = handle;
	runs[nruns].started = GetCurrentTimestamp();
	runs[nruns].timeout_ms = timeout_ms;
	nruns++;
	return true;
}

/*
 * SQL: next_run moved past now by whole intervals, on the grid start_at
 * set.  The estimate from lengths in seconds is off by at most one
 * interval (months and days vary in length), so it starts two short and
 * steps by the calendar.
 */
#define ADVANCE_BASE \
	"(next_run + every * GREATEST(pg_catalog.floor(EXTRACT(EPOCH FROM pg_catalog.now() - next_run)" \
	" / EXTRACT(EPOCH FROM every)) - 2, 0))"
#define ADVANCE_SQL \
	"(SELECT pg_catalog.min(t) FROM pg_catalog.generate_series(" ADVANCE_BASE ", " \
	ADVANCE_BASE " + every * 5, every) t WHERE t > pg_catalog.now())"

/*
 * SQL: how far a failure pushes the next run: 2, 4, at most 8 intervals
 * (p: the table's alias and a dot, or nothing).
 */
#define BACKOFF_SQL(p) p "every * LEAST(pg_catalog.power(2, " p "failures + 1), 8)"

/* SQL: is job j due? */
#define DUE_SQL \
	"j.enabled AND j.next_run <= pg_catalog.now()" \
	" AND (j.end_at IS NULL OR j.next_run <= j.end_at)" \
	" AND (j.max_runs IS NULL OR j.runs < j.max_runs)"

/*
 * Record as failed the runs sync_job shows under way that no worker of this
 * launcher is doing and no job worker still runs: at start, those a server
 * restart or crash interrupted; later, those whose worker exited (or never
 * started) without recording the outcome.
 */
static void
RecordLostRuns(const char *schema, bool starting)
{
	Datum	   *ids = palloc(sizeof(Datum) * (nruns + 1));
	Oid			argtypes[2] = {INT8ARRAYOID, TEXTOID};
	Datum		values[2];
	int			i;

	for (i = 0; i < nruns; i++)
		ids[i] = Int64GetDatum(runs[i].job);
	values[0] = PointerGetDatum(construct_array(ids, nruns, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = CStringGetTextDatum(starting ? "server restarted" :
									"the job worker exited without recording the run");
	SyncExecute(psprintf("WITH lost AS ("
						 "  UPDATE %s.sync_job j SET running_pid = NULL, running_since = NULL,"
						 "         last_status = 'failed', failures = j.failures + 1,"
						 "         next_run = GREATEST(j.next_run, j.last_run + " BACKOFF_SQL("j.") ")"
						 "    FROM %s.sync_job o"
						 "   WHERE o.id = j.id AND j.running_since IS NOT NULL AND j.id <> ALL ($1)"
						 "     AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a"
						 "                      WHERE a.pid = j.running_pid AND a.backend_type = 'sync job')"
						 "  RETURNING j.id, j.remote, o.running_since)"
						 " INSERT INTO %s.sync_log (kind, machine_id, job_id, started_at, finished_at, status, message)"
						 " SELECT 'pull', remote, id, running_since, pg_catalog.now(), 'failed', $2 FROM lost",
						 schema, schema, schema),
				2, argtypes, values, NULL);
}

/* A job that is due, as the launcher read it. */
typedef struct DueJob
{
	int64		id;
	int64		timeout_ms;
	Oid			owner;
	bool		busy;			/* sync_job shows a run under way */
} DueJob;

/* when the launcher last pruned sync_log */
static TimestampTz last_prune = 0;

/*
 * One look at sync_job, in a transaction of its own.
 */
static void
LauncherTick(bool starting)
{
	int			n;
	int			i;
	DueJob	   *due;
	char	   *schema;

	SyncWorkerBegin(true);
	pgstat_report_activity(STATE_RUNNING, "looking for due sync jobs");

	/* nothing to do until the extension is installed here */
	schema = ExtensionSchema(CurTransactionContext);
	if (schema == NULL)
		goto done;

	ReapRuns();
	RecordLostRuns(schema, starting);

	/* due jobs whose owner cannot log in fail without a worker */
	SyncExecute(psprintf("WITH lost AS ("
						 "  UPDATE %s.sync_job j SET runs = runs + 1, last_run = pg_catalog.now(),"
						 "         failures = failures + 1, last_status = 'failed',"
						 "         next_run = GREATEST(" ADVANCE_SQL ", pg_catalog.now() + " BACKOFF_SQL("") ")"
						 "   WHERE " DUE_SQL " AND j.running_since IS NULL"
						 "     AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles r"
						 "                      WHERE r.rolname = j.owner AND r.rolcanlogin)"
						 "  RETURNING j.id, j.remote, j.owner)"
						 " INSERT INTO %s.sync_log (kind, machine_id, job_id, started_at, finished_at, status, message)"
						 " SELECT 'pull', remote, id, pg_catalog.now(), pg_catalog.now(), 'failed',"
						 "        pg_catalog.format('role %%s, the job''s owner, does not exist or cannot log in', owner)"
						 "   FROM lost", schema, schema),
				0, NULL, NULL, NULL);

	n = SyncExecute(psprintf("SELECT j.id, (EXTRACT(EPOCH FROM j.timeout) * 1000)::int8, r.oid,"
							 "       j.running_since IS NOT NULL"
							 "  FROM %s.sync_job j JOIN pg_catalog.pg_roles r ON r.rolname = j.owner"
							 " WHERE " DUE_SQL
							 " ORDER BY j.next_run", schema),
					0, NULL, NULL, NULL);
	due = palloc(sizeof(DueJob) * (n + 1));
	for (i = 0; i < n; i++)
	{
		SyncGetInt64(i, 1, &due[i].id);
		SyncGetInt64(i, 2, &due[i].timeout_ms);
		due[i].owner = SyncGetOid(i, 3);
		due[i].busy = strcmp(SyncGetText(i, 4), "t") == 0;
	}

	for (i = 0; i < n; i++)
	{
		Oid			argtypes[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(due[i].id)};

		if (JobRunning(due[i].id) || due[i].busy)
		{
			/* never two runs of a job at once: this one is skipped */
			SyncExecute(psprintf("INSERT INTO %s.sync_log (kind, machine_id, job_id, started_at, finished_at, status, message)"
								 " SELECT 'pull', remote, id, pg_catalog.now(), pg_catalog.now(), 'skipped',"
								 "        'the previous run is still going'"
								 "   FROM %s.sync_job WHERE id = $1", schema, schema),
						1, argtypes, values, NULL);
			SyncExecute(psprintf("UPDATE %s.sync_job SET next_run = " ADVANCE_SQL " WHERE id = $1", schema),
						1, argtypes, values, NULL);
			continue;
		}
		if (nruns >= Min(sync_max_workers, MAX_RUNS))
			break;				/* the next tick tries again */
		if (!StartRun(due[i].id, due[i].owner, due[i].timeout_ms))
			break;				/* no worker slot: the next tick tries again */
		SyncExecute(psprintf("UPDATE %s.sync_job SET runs = runs + 1, last_run = pg_catalog.now(),"
							 "  running_since = pg_catalog.now(), next_run = " ADVANCE_SQL
							 " WHERE id = $1", schema),
					1, argtypes, values, NULL);
	}

	/* the log never grows without bound */
	if (TimestampDifferenceExceeds(last_prune, GetCurrentTimestamp(), 10 * 1000))
	{
		Oid			argtypes[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum((int64) sync_log_retention)};

		SyncExecute(psprintf("DELETE FROM %s.sync_log"
							 " WHERE started_at < pg_catalog.now() - $1 * interval '1 minute'", schema),
					1, argtypes, values, NULL);
		last_prune = GetCurrentTimestamp();
	}

done:
	SyncWorkerCommit();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Main of the launcher.
 */
void
sync_launcher_main(Datum main_arg)
{
	volatile bool starting = true;
	MemoryContext tick_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(sync_database, NULL, 0);
	/* while the process still has its place in shared memory */
	before_shmem_exit(StopRuns, (Datum) 0);
	tick_cxt = AllocSetContextCreate(TopMemoryContext, "sync launcher tick",
									 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		wait_ms = 500;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * An error in one look (a job row the SQL cannot handle, say) is
		 * reported and the launcher goes on, rather than exiting and
		 * stopping every run under way.
		 */
		MemoryContextSwitchTo(tick_cxt);
		PG_TRY();
		{
			LauncherTick(starting);
			starting = false;
		}
		PG_CATCH();
		{
			HOLD_INTERRUPTS();
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			RESUME_INTERRUPTS();
			wait_ms = 5000;
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(tick_cxt);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* What Elevate saved, for Unelevate. */
typedef struct Elevation
{
	Oid			userid;
	int			sec_context;
} Elevation;

/*
 * In a job worker, run our own statements on sync_job as the launcher does:
 * as the bootstrap superuser (and, by SyncWorkerBegin(true), with
 * search_path pinned to pg_catalog).  The job's owner then needs no
 * privilege on sync_job, and nothing in the owner's search_path can stand
 * in for what the statements call.
 */
static void
Elevate(Elevation *e)
{
	GetUserIdAndSecContext(&e->userid, &e->sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   e->sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/* Back to the job's owner, before the transaction commits. */
static void
Unelevate(Elevation *e)
{
	SetUserIdAndSecContext(e->userid, e->sec_context);
}

/*
 * Main of a job worker: one run of one job, as the job's owner, in a
 * session like the owner's own (its search_path and role settings).
 */
void
sync_job_worker_main(Datum main_arg)
{
	int64		job = DatumGetInt64(main_arg);
	Oid			ids[2];
	char	   *schema;
	int64		remote = 0;
	int64		timeout_ms = 0;
	Oid			argtypes[3] = {INT8OID, TEXTOID, BOOLOID};
	Datum		values[3];
	const char *volatile status = "applied";
	volatile bool ok = true;
	uint64		writes = sync_log_writes;
	TimestampTz started;
	char	   *volatile message = NULL;
	Elevation	elevation;

	memcpy(ids, MyBgworkerEntry->bgw_extra, sizeof(ids));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(ids[0], ids[1], 0);
	sync_current_job = job;

	/* the run is under way */
	SyncWorkerBegin(true);
	Elevate(&elevation);
	schema = ExtensionSchema(TopMemoryContext);
	values[0] = Int64GetDatum(job);
	if (schema == NULL ||
		SyncExecute(psprintf("UPDATE %s.sync_job SET running_pid = pg_catalog.pg_backend_pid(),"
							 "  running_since = COALESCE(running_since, pg_catalog.now()) WHERE id = $1"
							 " RETURNING remote, (EXTRACT(EPOCH FROM timeout) * 1000)::int8", schema),
					1, argtypes, values, NULL) == 0)
		proc_exit(0);			/* dropped or unscheduled meanwhile */
	SyncGetInt64(0, 1, &remote);
	SyncGetInt64(0, 2, &timeout_ms);
	Unelevate(&elevation);
	SyncWorkerCommit();
	pgstat_report_appname(psprintf("sync job " INT64_FORMAT, job));
	started = GetCurrentTimestamp();

	/* the pull, under the job's timeout, which ends before the commit */
	PG_TRY();
	{
		Datum		arg[1] = {Int64GetDatum(remote)};
		Oid			type[1] = {INT8OID};

		enable_timeout_after(STATEMENT_TIMEOUT, (int) Min(timeout_ms, INT_MAX));
		/* in the owner's own settings, as an interactive pull would be */
		SyncWorkerBegin(false);
		SyncExecute(psprintf("SELECT status FROM %s.sync_pull($1)", schema), 1, type, arg, NULL);
		status = MemoryContextStrdup(TopMemoryContext, SyncGetText(0, 1));
		disable_timeout(STATEMENT_TIMEOUT, false);
		QueryCancelPending = false;
		SyncWorkerCommit();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		disable_timeout(STATEMENT_TIMEOUT, false);
		HOLD_INTERRUPTS();
		/* the error must outlive the transaction it happened in */
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		QueryCancelPending = false;
		RESUME_INTERRUPTS();
		ok = false;
		status = (edata->sqlerrcode == ERRCODE_QUERY_CANCELED) ? "timeout" : "failed";
		message = edata->message;
	}
	PG_END_TRY();

	/* a run that failed before the pull could record it (no privilege) */
	if (!ok && sync_log_writes == writes)
	{
		SyncLogEntry entry;

		SyncLogInit(&entry, "pull");
		entry.machine_id = remote;
		entry.started_at = started;
		entry.finished_at = GetCurrentTimestamp();
		entry.status = status;
		entry.message = message;
		StartTransactionCommand();
		SyncLogWrite(&entry);
		CommitTransactionCommand();
	}

	/* the outcome; after a failure, back off */
	values[1] = CStringGetTextDatum(status);
	values[2] = BoolGetDatum(ok);
	SyncWorkerBegin(true);
	Elevate(&elevation);
	SyncExecute(psprintf("UPDATE %s.sync_job SET running_pid = NULL, running_since = NULL,"
						 "  last_status = $2,"
						 "  failures = CASE WHEN $3 THEN 0 ELSE failures + 1 END,"
						 "  next_run = CASE WHEN $3 THEN next_run ELSE"
						 "    GREATEST(next_run, last_run + " BACKOFF_SQL("") ") END"
						 " WHERE id = $1", schema),
				3, argtypes, values, NULL);
	Unelevate(&elevation);
	SyncWorkerCommit();
	proc_exit(0);
}
