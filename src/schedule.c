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
 * The launcher's statements are prepared once (re-prepared only when the
 * extension moves, or after a failed look) and run as the bootstrap
 * superuser with search_path pinned.
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
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "log.h"
#include "registry.h"
#include "schedule.h"
#include "settings.h"

PG_FUNCTION_INFO_V1(sync_schedule);

PGDLLEXPORT void sync_launcher_main(Datum main_arg);
PGDLLEXPORT void sync_job_worker_main(Datum main_arg);

/* whether this server runs the launcher (shared_preload_libraries) */
static bool launcher_registered = false;

/* A run the launcher started. */
typedef struct JobRun
{
	int64		job;
	BackgroundWorkerHandle *handle;
	TimestampTz started;
	int64		timeout_ms;
} JobRun;

static JobRun runs[SYNC_MAX_WORKERS_LIMIT];
static int	nruns = 0;

/* The launcher's statements, prepared for the extension's schema. */
typedef struct LauncherPlans
{
	Oid			schema;			/* InvalidOid: none prepared */
	SPIPlanPtr	lost;			/* RecordLostRuns */
	SPIPlanPtr	no_login;		/* due jobs whose owner cannot log in */
	SPIPlanPtr	due;			/* the due jobs */
	SPIPlanPtr	skip;			/* a run skipped: next_run moves on */
	SPIPlanPtr	start;			/* a run started */
	SPIPlanPtr	prune;			/* old rows of sync_log */
} LauncherPlans;

static SPIPlanPtr extension_plan = NULL;
static LauncherPlans plans;
static bool plans_stale = false;

/* when the launcher last pruned sync_log */
static TimestampTz last_prune = 0;

/*
 * With shared_preload_libraries, register the launcher (module.c calls
 * this while the library is being preloaded).
 */
void
SyncRegisterLauncher(void)
{
	BackgroundWorker worker;

	launcher_registered = true;
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
	SyncMachine machine;
	int64		job = 0;
	int			save_nestlevel;
	int			i;

	SyncEnter(fcinfo);
	if (!launcher_registered)
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

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	if (SyncLocalMachine(&machine) && machine.id == remote)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("machine " INT64_FORMAT " is this server", remote),
				 errdetail("A server pulls only other machines' rows.")));
	if (!SyncLookupMachine(remote, &machine))
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
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_INT64(job);
}

/*
 * The schema the extension is installed in, in this database, which our
 * SQL then names (SyncUseSchema); InvalidOid if it is not installed, or
 * not at this library's version (until ALTER EXTENSION ... UPDATE, said
 * once in the server log).
 */
static Oid
ExtensionSchema(void)
{
	static char *reported = NULL;
	char	   *version;
	Oid			nsp;

	if (extension_plan == NULL)
	{
		extension_plan = SPI_prepare("SELECT e.extnamespace, e.extversion FROM pg_catalog.pg_extension e"
									 " WHERE e.extname = 'sync'", 0, NULL);
		if (extension_plan == NULL || SPI_keepplan(extension_plan) != 0)
			elog(ERROR, "could not prepare the launcher's statements");
	}
	if (SPI_execute_plan(extension_plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not find the sync extension");
	if (SPI_processed == 0)
		return InvalidOid;
	nsp = SyncGetOid(0, 1);
	version = SyncGetText(0, 2);
	if (strcmp(version, SYNC_EXTENSION_VERSION) != 0)
	{
		if (reported == NULL || strcmp(reported, version) != 0)
		{
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("scheduled pulls wait: extension sync is at version %s in database \"%s\", but its library is version %s",
							version, get_database_name(MyDatabaseId), SYNC_EXTENSION_VERSION),
					 errhint("Run ALTER EXTENSION sync UPDATE.")));
			reported = MemoryContextStrdup(TopMemoryContext, version);
		}
		return InvalidOid;
	}
	SyncUseSchema(nsp);
	return nsp;
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

/* Prepare one statement of the launcher for good. */
static SPIPlanPtr
KeepPlan(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_prepare failed: %s: %s",
			 SPI_result_code_string(SPI_result), sql);
	return plan;
}

/* Forget the prepared statements (in a transaction). */
static void
FreePlans(void)
{
	SPIPlanPtr *all[] = {&plans.lost, &plans.no_login, &plans.due,
	&plans.skip, &plans.start, &plans.prune};
	int			i;

	for (i = 0; i < (int) lengthof(all); i++)
	{
		if (*all[i])
			SPI_freeplan(*all[i]);
		*all[i] = NULL;
	}
	plans.schema = InvalidOid;
	plans_stale = false;
}

/*
 * Prepare the launcher's statements for the extension in schema, unless
 * they are already.
 */
static void
PreparePlans(Oid schema)
{
	Oid			lost_types[2] = {INT8ARRAYOID, TEXTOID};
	Oid			int8[1] = {INT8OID};
	char	   *job = SyncObject("sync_job");

	if (plans_stale || plans.schema != schema)
		FreePlans();
	if (OidIsValid(plans.schema))
		return;

	/* runs under way that no worker does: lost to a restart or an exit */
	plans.lost = KeepPlan(psprintf("UPDATE %s j SET running_pid = NULL, running_since = NULL,"
								   "       last_status = 'failed', failures = j.failures + 1,"
								   "       next_run = GREATEST(j.next_run, j.last_run + " BACKOFF_SQL("j.") ")"
								   "  FROM %s o"
								   " WHERE o.id = j.id AND j.running_since IS NOT NULL AND j.id <> ALL ($1)"
								   "   AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a"
								   "                    WHERE a.pid = j.running_pid AND a.backend_type = 'sync job')"
								   " RETURNING j.id, j.remote, o.running_since, $2", job, job),
						  2, lost_types);
	/* due jobs whose owner cannot log in fail without a worker */
	plans.no_login = KeepPlan(psprintf("UPDATE %s j SET runs = runs + 1, last_run = pg_catalog.now(),"
									   "       failures = failures + 1, last_status = 'failed',"
									   "       next_run = GREATEST(" ADVANCE_SQL ", pg_catalog.now() + " BACKOFF_SQL("") ")"
									   " WHERE " DUE_SQL " AND j.running_since IS NULL"
									   "   AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles r"
									   "                    WHERE r.rolname = j.owner AND r.rolcanlogin)"
									   " RETURNING j.id, j.remote, pg_catalog.now(),"
									   "   pg_catalog.format('role %%s, the job''s owner, does not exist or cannot log in', j.owner)",
									   job),
							  0, NULL);
	plans.due = KeepPlan(psprintf("SELECT j.id, (EXTRACT(EPOCH FROM j.timeout) * 1000)::int8, r.oid,"
								  "       j.running_since IS NOT NULL"
								  "  FROM %s j JOIN pg_catalog.pg_roles r ON r.rolname = j.owner"
								  " WHERE " DUE_SQL
								  " ORDER BY j.next_run", job),
						 0, NULL);
	plans.skip = KeepPlan(psprintf("UPDATE %s SET next_run = " ADVANCE_SQL " WHERE id = $1"
								   " RETURNING remote", job),
						  1, int8);
	plans.start = KeepPlan(psprintf("UPDATE %s SET runs = runs + 1, last_run = pg_catalog.now(),"
									"  running_since = pg_catalog.now(), next_run = " ADVANCE_SQL
									" WHERE id = $1", job),
						   1, int8);
	plans.prune = KeepPlan(SyncLogPruneSql(), 1, int8);
	plans.schema = schema;
}

/* Run a prepared statement of the launcher; returns the rows processed. */
static int
RunPlan(SPIPlanPtr plan, Datum *values)
{
	int			rc = SPI_execute_plan(plan, values, NULL, false, 0);

	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	return (int) SPI_processed;
}

/* Log a scheduled run the launcher settled without a worker. */
static void
LogRun(int64 job, int64 remote, TimestampTz started, const char *status,
	   const char *message)
{
	SyncLogEntry entry;

	SyncLogInit(&entry, "pull");
	entry.machine_id = remote;
	entry.job_id = job;
	entry.started_at = started;
	entry.finished_at = GetCurrentTransactionStartTimestamp();
	entry.status = status;
	entry.message = message;
	SyncLogInsert(&entry);
}

/*
 * Log the runs a statement settled as failed without a worker (plans.lost
 * and plans.no_login, which return job, remote, start and message).
 */
static void
LogFailedRuns(int n)
{
	int64	   *jobs = palloc(sizeof(int64) * (n + 1));
	int64	   *remotes = palloc(sizeof(int64) * (n + 1));
	TimestampTz *starts = palloc(sizeof(TimestampTz) * (n + 1));
	char	  **messages = palloc(sizeof(char *) * (n + 1));
	int			i;

	/* copied out: logging runs statements of its own */
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		SyncGetInt64(i, 1, &jobs[i]);
		SyncGetInt64(i, 2, &remotes[i]);
		starts[i] = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 3, &isnull));
		messages[i] = SyncGetText(i, 4);
	}
	for (i = 0; i < n; i++)
		LogRun(jobs[i], remotes[i], starts[i], "failed", messages[i]);
}

/*
 * Record as failed the runs sync_job shows under way that no worker of this
 * launcher is doing and no job worker still runs: at start, those a server
 * restart or crash interrupted; later, those whose worker exited (or never
 * started) without recording the outcome.
 */
static void
RecordLostRuns(bool starting)
{
	Datum	   *ids = palloc(sizeof(Datum) * (nruns + 1));
	Datum		values[2];
	int			i;

	for (i = 0; i < nruns; i++)
		ids[i] = Int64GetDatum(runs[i].job);
	values[0] = PointerGetDatum(construct_array(ids, nruns, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = CStringGetTextDatum(starting ? "server restarted" :
									"the job worker exited without recording the run");
	LogFailedRuns(RunPlan(plans.lost, values));
}

/* A job that is due, as the launcher read it. */
typedef struct DueJob
{
	int64		id;
	int64		timeout_ms;
	Oid			owner;
	bool		busy;			/* sync_job shows a run under way */
} DueJob;

/* The due jobs, in the order they came due. */
static DueJob *
DueJobs(int *n)
{
	DueJob	   *due;
	int			i;

	*n = RunPlan(plans.due, NULL);
	due = palloc(sizeof(DueJob) * (*n + 1));
	for (i = 0; i < *n; i++)
	{
		SyncGetInt64(i, 1, &due[i].id);
		SyncGetInt64(i, 2, &due[i].timeout_ms);
		due[i].owner = SyncGetOid(i, 3);
		due[i].busy = SyncGetBool(i, 4);
	}
	return due;
}

/*
 * Start the due jobs, as far as workers allow; a job whose previous run is
 * still going is skipped.
 */
static void
StartDueJobs(void)
{
	int			n;
	DueJob	   *due = DueJobs(&n);
	int			i;

	for (i = 0; i < n; i++)
	{
		Datum		values[1] = {Int64GetDatum(due[i].id)};

		if (JobRunning(due[i].id) || due[i].busy)
		{
			int64		remote = 0;

			/* never two runs of a job at once: this one is skipped */
			if (RunPlan(plans.skip, values) > 0 && SyncGetInt64(0, 1, &remote))
				LogRun(due[i].id, remote, GetCurrentTransactionStartTimestamp(), "skipped",
					   "the previous run is still going");
			continue;
		}
		if (nruns >= Min(sync_max_workers, SYNC_MAX_WORKERS_LIMIT))
			break;				/* the next tick tries again */
		if (!StartRun(due[i].id, due[i].owner, due[i].timeout_ms))
			break;				/* no worker slot: the next tick tries again */
		(void) RunPlan(plans.start, values);
	}
}

/*
 * One look at sync_job, in a transaction of its own.
 */
static void
LauncherTick(bool starting)
{
	Oid			schema;

	SyncWorkerBegin(true);
	pgstat_report_activity(STATE_RUNNING, "looking for due sync jobs");

	/* nothing to do until the extension is installed here */
	schema = ExtensionSchema();
	if (OidIsValid(schema))
	{
		PreparePlans(schema);
		ReapRuns();
		RecordLostRuns(starting);
		LogFailedRuns(RunPlan(plans.no_login, NULL));
		StartDueJobs();

		/* the log never grows without bound */
		if (TimestampDifferenceExceeds(last_prune, GetCurrentTimestamp(), 10 * 1000))
		{
			Datum		values[1] = {Int64GetDatum((int64) sync_log_retention)};

			(void) RunPlan(plans.prune, values);
			last_prune = GetCurrentTimestamp();
		}
	}
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
		 * stopping every run under way; its statements are prepared again.
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
			plans_stale = true;
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

/*
 * In a job worker, run a statement on sync_job as the launcher does: as
 * the bootstrap superuser, with search_path pinned.  The job's owner then
 * needs no privilege on sync_job, and nothing in the owner's search_path
 * can stand in for what the statement calls.
 */
static int
JobStatementAsLauncher(const char *sql, int nargs, Oid *argtypes, Datum *values)
{
	return SyncExecuteAs(BOOTSTRAP_SUPERUSERID, sql, nargs, argtypes, values, NULL);
}

/*
 * The job worker's start: mark the run under way, and read what to pull
 * and the timeout; false if the job is gone (dropped or unscheduled
 * meanwhile).
 */
static bool
BeginJob(int64 job, int64 *remote, int64 *timeout_ms)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job)};
	bool		found;

	SyncWorkerBegin(true);
	found = OidIsValid(ExtensionSchema()) &&
		JobStatementAsLauncher(psprintf("UPDATE %s SET running_pid = pg_catalog.pg_backend_pid(),"
										"  running_since = COALESCE(running_since, pg_catalog.now()) WHERE id = $1"
										" RETURNING remote, (EXTRACT(EPOCH FROM timeout) * 1000)::int8",
										SyncObject("sync_job")),
							   1, argtypes, values) > 0;
	if (found)
	{
		SyncGetInt64(0, 1, remote);
		SyncGetInt64(0, 2, timeout_ms);
	}
	SyncWorkerCommit();
	return found;
}

/*
 * The pull, under the job's timeout, which ends before the commit; returns
 * the status to record, and sets message for a failure.
 */
static const char *
RunJobPull(int64 remote, int64 timeout_ms, char **message)
{
	const char *volatile status = "applied";

	PG_TRY();
	{
		Datum		arg[1] = {Int64GetDatum(remote)};
		Oid			type[1] = {INT8OID};

		enable_timeout_after(STATEMENT_TIMEOUT, (int) Min(timeout_ms, INT_MAX));
		/* in the owner's own settings, as an interactive pull would be */
		SyncWorkerBegin(false);
		SyncExecute(psprintf("SELECT status FROM %s($1)", SyncObject("sync_pull")), 1, type, arg, NULL);
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
		status = (edata->sqlerrcode == ERRCODE_QUERY_CANCELED) ? "timeout" : "failed";
		*message = edata->message ? edata->message : "unknown error";
	}
	PG_END_TRY();
	return status;
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
	int64		remote = 0;
	int64		timeout_ms = 0;
	Oid			argtypes[3] = {INT8OID, TEXTOID, BOOLOID};
	Datum		values[3];
	const char *status;
	bool		ok;
	uint64		writes = sync_log_writes;
	TimestampTz started;
	char	   *message = NULL;

	memcpy(ids, MyBgworkerEntry->bgw_extra, sizeof(ids));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(ids[0], ids[1], 0);
	sync_current_job = job;

	if (!BeginJob(job, &remote, &timeout_ms))
		proc_exit(0);
	pgstat_report_appname(psprintf("sync job " INT64_FORMAT, job));
	started = GetCurrentTimestamp();
	status = RunJobPull(remote, timeout_ms, &message);
	ok = (message == NULL);

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
	values[0] = Int64GetDatum(job);
	values[1] = CStringGetTextDatum(status);
	values[2] = BoolGetDatum(ok);
	SyncWorkerBegin(true);
	JobStatementAsLauncher(psprintf("UPDATE %s SET running_pid = NULL, running_since = NULL,"
									"  last_status = $2,"
									"  failures = CASE WHEN $3 THEN 0 ELSE failures + 1 END,"
									"  next_run = CASE WHEN $3 THEN next_run ELSE"
									"    GREATEST(next_run, last_run + " BACKOFF_SQL("") ") END"
									" WHERE id = $1", SyncObject("sync_job")),
						   3, argtypes, values);
	SyncWorkerCommit();
	proc_exit(0);
}
