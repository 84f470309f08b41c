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
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "format.h"
#include "log.h"
#include "registry.h"
#include "schedule.h"
#include "settings.h"

PG_FUNCTION_INFO_V1(sync_schedule);
PG_FUNCTION_INFO_V1(sync_schedule_id);
PG_FUNCTION_INFO_V1(sync_schedule_name);
PG_FUNCTION_INFO_V1(sync_schedule_dump);
PG_FUNCTION_INFO_V1(sync_unschedule_id);
PG_FUNCTION_INFO_V1(sync_unschedule_name);

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
 * A job to schedule: what it does (pull a machine, or dump this one), when,
 * and its name.  The schedule's Datums are in sync_job's column order:
 * every, start_at, end_at, max_runs, timeout, enabled.
 */
typedef struct JobSpec
{
	const char *kind;			/* "pull" or "dump" */
	int64		remote;			/* pull: the machine */
	int32		level;			/* dump: sync_dump's arguments */
	bool		anonymize;
	bool		unchecked;
	bool		push;			/* dump: push after each dump */
	Datum		when[6];
	char		when_nulls[6];
	const char *name;			/* NULL: none */
} JobSpec;

/* The schedule's place in JobSpec.when */
#define WHEN_EVERY 0
#define WHEN_START 1
#define WHEN_END 2
#define WHEN_MAX_RUNS 3
#define WHEN_TIMEOUT 4
#define WHEN_ENABLED 5

/*
 * Read the schedule from the arguments numbered args (every, start_at,
 * end_at, max_runs, timeout, enabled) and the name from argument
 * name_arg, refusing a schedule that could not run as meant, with
 * a message per argument (sync_job's checks say the same for changes made
 * with SQL).
 */
static void
ReadSchedule(FunctionCallInfo fcinfo, const int *args, int name_arg, JobSpec *spec)
{
	Datum	   *v = spec->when;
	char	   *n = spec->when_nulls;
	int			i;

	if (!launcher_registered)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("scheduled jobs need sync in shared_preload_libraries"),
				 errhint("Add 'sync' to shared_preload_libraries in postgresql.conf, set sync.database, and restart the server.")));
	if (strcmp(get_database_name(MyDatabaseId), sync_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("scheduled jobs run only in database \"%s\"", sync_database),
				 errdetail("This is database \"%s\"; the launcher reads the jobs of sync.database alone.",
						   get_database_name(MyDatabaseId)),
				 errhint("Schedule the job in database \"%s\", or set sync.database and restart the server.",
						 sync_database)));
	for (i = 0; i < 6; i++)
	{
		v[i] = PG_ARGISNULL(args[i]) ? (Datum) 0 : PG_GETARG_DATUM(args[i]);
		n[i] = PG_ARGISNULL(args[i]) ? 'n' : ' ';
	}
	spec->name = PG_ARGISNULL(name_arg) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(name_arg));
	if (n[WHEN_EVERY] == 'n' || n[WHEN_START] == 'n' || n[WHEN_TIMEOUT] == 'n' ||
		n[WHEN_ENABLED] == 'n')
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("every, start_at, timeout and enabled must not be null")));
	if (IntervalSeconds(v[WHEN_EVERY]) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("every must be at least 1 second")));
	if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(v[WHEN_START])))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_at must be a finite time")));
	if (n[WHEN_END] != 'n' &&
		DatumGetBool(DirectFunctionCall2(timestamp_le, v[WHEN_END], v[WHEN_START])))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("end_at must be later than start_at")));
	if (n[WHEN_MAX_RUNS] != 'n' && DatumGetInt32(v[WHEN_MAX_RUNS]) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_runs must be at least 1")));
	if (IntervalSeconds(v[WHEN_TIMEOUT]) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be longer than zero")));
	if (spec->name != NULL && spec->name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a job's name must not be empty"),
				 errhint("Leave name out (NULL) for a job without one.")));
}

/* SQL: may the current user change job j (sync_job_check_owner's rule)? */
#define MAY_CHANGE_SQL \
	"coalesce((SELECT pg_catalog.pg_has_role(CURRENT_USER, r.oid, 'MEMBER')" \
	"            FROM pg_catalog.pg_roles r WHERE r.rolname = j.owner)," \
	"         (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = CURRENT_USER))"

/* A job found by FindJob. */
typedef struct FoundJob
{
	int64		id;
	char	   *kind;
	char	   *name;			/* NULL: none */
	char	   *owner;
	bool		may_change;
} FoundJob;

/*
 * Find a job (locking it) by id, or with name given by name; false if there
 * is none.  The caller is connected to SPI.
 */
static bool
FindJob(int64 id, const char *name, FoundJob *job)
{
	Oid			argtypes[1] = {name == NULL ? INT8OID : TEXTOID};
	Datum		values[1] = {name == NULL ? Int64GetDatum(id) : CStringGetTextDatum(name)};

	if (SyncExecute(psprintf("SELECT j.id, j.kind, j.name, j.owner, " MAY_CHANGE_SQL
							 "  FROM %s j WHERE %s = $1 FOR UPDATE",
							 SyncObject("sync_job"), name == NULL ? "j.id" : "j.name"),
					1, argtypes, values, NULL) == 0)
		return false;
	SyncGetInt64(0, 1, &job->id);
	job->kind = SyncGetText(0, 2);
	job->name = SyncGetText(0, 3);
	job->owner = SyncGetText(0, 4);
	job->may_change = SyncGetBool(0, 5);
	return true;
}

/* How a job is named in messages: its id, and its name if it has one. */
static char *
JobLabel(const FoundJob *job)
{
	return job->name ? psprintf("job " INT64_FORMAT " (\"%s\")", job->id, job->name) :
		psprintf("job " INT64_FORMAT, job->id);
}

/*
 * Refuse to change or remove a job of a role the current user is not a
 * member of (as sync_job's trigger would, without its trigger's context).
 */
static void
CheckMayChange(const FoundJob *job)
{
	if (!job->may_change)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s of role %s", JobLabel(job), job->owner),
				 errhint("Only members of a job's owner may change or remove it.")));
}

/*
 * Add the job of spec, or change the job of that name; returns its id.
 * Without a name, a second job for the same purpose (pulling the same
 * machine, or dumping) is refused: it would run the same work twice.
 */
static int64
ScheduleJob(JobSpec *spec)
{
	Oid			argtypes[13] = {INTERVALOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID,
	INTERVALOID, BOOLOID, TEXTOID, INT8OID, INT4OID, BOOLOID, BOOLOID, TEXTOID, BOOLOID};
	Datum		values[13];
	char		nulls[13];
	bool		pull = (strcmp(spec->kind, "pull") == 0);
	FoundJob	job;
	int64		id = 0;
	const char *sql;

	memcpy(values, spec->when, sizeof(spec->when));
	memcpy(nulls, spec->when_nulls, sizeof(spec->when_nulls));
	values[6] = CStringGetTextDatum(spec->kind);
	values[7] = Int64GetDatum(spec->remote);
	values[8] = Int32GetDatum(spec->level);
	values[9] = BoolGetDatum(spec->anonymize);
	values[10] = BoolGetDatum(spec->unchecked);
	values[11] = spec->name ? CStringGetTextDatum(spec->name) : (Datum) 0;
	nulls[6] = ' ';
	nulls[7] = pull ? ' ' : 'n';
	nulls[8] = nulls[9] = nulls[10] = pull ? 'n' : ' ';
	nulls[11] = spec->name ? ' ' : 'n';
	values[12] = BoolGetDatum(spec->push);
	nulls[12] = ' ';

	if (spec->name != NULL && FindJob(-1, spec->name, &job))
	{
		/* a job of that name: it is changed, as pg_cron does */
		if (strcmp(job.kind, spec->kind) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("%s is a %s job", JobLabel(&job), job.kind),
					 errhint("Choose another name, or remove that job first with sync_unschedule(%s).",
							 quote_literal_cstr(spec->name))));
		CheckMayChange(&job);
		sql = psprintf("UPDATE %s SET every = $1, start_at = $2, end_at = $3, max_runs = $4,"
					   "  timeout = $5, enabled = $6, next_run = $2, failures = 0,"
					   "  remote = $8, level = $9, anonymize = $10, unchecked = $11, push = $13,"
					   "  owner = CURRENT_USER"
					   " WHERE kind = $7 AND name = $12 RETURNING id", SyncObject("sync_job"));
	}
	else
	{
		Oid			dup_types[2] = {TEXTOID, INT8OID};
		Datum		dup_values[2] = {values[6], values[7]};

		if (spec->name == NULL &&
			SyncExecute(psprintf("SELECT j.id, j.kind, j.name, j.owner, " MAY_CHANGE_SQL
								 "  FROM %s j WHERE j.kind = $1 AND j.remote IS NOT DISTINCT FROM $2"
								 " ORDER BY j.id LIMIT 1", SyncObject("sync_job")),
						2, dup_types, dup_values, pull ? "  " : " n") > 0)
		{
			SyncGetInt64(0, 1, &job.id);
			job.name = SyncGetText(0, 3);
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 pull ? errmsg("machine " INT64_FORMAT " is already pulled by %s",
								   spec->remote, JobLabel(&job)) :
					 errmsg("this server is already dumped by %s", JobLabel(&job)),
					 job.name ?
					 errhint("Change that job with name => %s, remove it with sync_unschedule(" INT64_FORMAT "), or give this job a name of its own.",
							 quote_literal_cstr(job.name), job.id) :
					 errhint("Remove that job with sync_unschedule(" INT64_FORMAT "), or give this job a name of its own.",
							 job.id)));
		}
		sql = psprintf("INSERT INTO %s (every, start_at, end_at, max_runs, timeout, enabled,"
					   "  kind, remote, level, anonymize, unchecked, name, push, next_run)"
					   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $2) RETURNING id",
					   SyncObject("sync_job"));
	}
	SyncExecute(sql, 13, argtypes, values, nulls);
	SyncGetInt64(0, 1, &id);
	return id;
}

/*
 * sync_schedule(remote, every, start_at, end_at, max_runs, timeout,
 *				 enabled, name) returns the job's id; remote is a machine id
 * or (by_name) a hostname.
 */
static Datum
SchedulePull(FunctionCallInfo fcinfo, bool by_name)
{
	static const int args[6] = {1, 2, 3, 4, 5, 6};
	JobSpec		spec;
	SyncMachine local;
	SyncMachine machine;
	int64		job;
	int			save_nestlevel;

	SyncEnter(fcinfo);
	memset(&spec, 0, sizeof(spec));
	spec.kind = "pull";
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("remote must not be null")));
	ReadSchedule(fcinfo, args, 7, &spec);

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	SyncFindMachine(by_name, by_name ? 0 : PG_GETARG_INT64(0),
					by_name ? text_to_cstring(PG_GETARG_TEXT_PP(0)) : NULL, &machine);
	if (SyncLocalMachine(&local) && machine.id == local.id)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("machine " INT64_FORMAT " is this server", machine.id),
				 errdetail("A server pulls only other machines' rows."),
				 errhint("Schedule its dumps with sync_schedule_dump().")));
	spec.remote = machine.id;
	job = ScheduleJob(&spec);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_INT64(job);
}

/*
 * The entry point of sync_schedule before 0.6, which the install scripts
 * of those versions name: SyncEnter refuses the call until ALTER EXTENSION
 * sync UPDATE replaces the function.
 */
Datum
sync_schedule(PG_FUNCTION_ARGS)
{
	SyncEnter(fcinfo);
	elog(ERROR, "sync_schedule of version %s called", SYNC_EXTENSION_VERSION);
	PG_RETURN_NULL();
}

Datum
sync_schedule_id(PG_FUNCTION_ARGS)
{
	return SchedulePull(fcinfo, false);
}

Datum
sync_schedule_name(PG_FUNCTION_ARGS)
{
	return SchedulePull(fcinfo, true);
}

/*
 * The function name(argtypes) of the extension, in its schema.  The caller
 * is connected to SPI.
 */
static Oid
OwnFunction(const char *name, const char *argtypes)
{
	SyncExecute(psprintf("SELECT %s::pg_catalog.regprocedure::pg_catalog.oid",
						 quote_literal_cstr(psprintf("%s%s", SyncObject(name), argtypes))),
				0, NULL, NULL, NULL);
	return SyncGetOid(0, 1);
}

/* May the current user run the function name(argtypes) of the extension? */
static bool
MayRunOwnFunction(const char *name, const char *argtypes)
{
	return pg_proc_aclcheck(OwnFunction(name, argtypes), GetUserId(), ACL_EXECUTE) == ACLCHECK_OK;
}

/*
 * sync_schedule_dump(every, level, anonymize, unchecked, start_at, end_at,
 *					  max_runs, timeout, enabled, name) returns the job's id
 */
Datum
sync_schedule_dump(PG_FUNCTION_ARGS)
{
	static const int args[6] = {0, 4, 5, 6, 7, 8};
	JobSpec		spec;
	SyncMachine local;
	int64		job;
	int			save_nestlevel;

	SyncEnter(fcinfo);
	memset(&spec, 0, sizeof(spec));
	spec.kind = "dump";
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(10))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("level, anonymize, unchecked and push must not be null")));
	spec.level = PG_GETARG_INT32(1);
	spec.anonymize = PG_GETARG_BOOL(2);
	spec.unchecked = PG_GETARG_BOOL(3);
	spec.push = PG_GETARG_BOOL(10);
	ReadSchedule(fcinfo, args, 9, &spec);
	SyncCheckLevel(spec.level);

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	if (!SyncLocalMachine(&local))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this server is not a machine of the federation yet"),
				 errhint("Run sync_init(id) with the id registered for this server first.")));
	if (!MayRunOwnFunction("sync_dump", "(integer, boolean, boolean, boolean)"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to schedule dumps"),
				 errdetail("A scheduled dump runs as the role that scheduled it, which needs EXECUTE on sync_dump()."),
				 errhint("Superusers and members of pg_write_server_files have it.")));
	if (spec.push && !MayRunOwnFunction("sync_push", "()"))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to schedule pushes"),
				 errdetail("A scheduled dump that pushes runs sync_push() as the role that scheduled it."),
				 errhint("Grant that role EXECUTE on sync_push(), or schedule the dump without push.")));
	job = ScheduleJob(&spec);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_INT64(job);
}

/*
 * sync_unschedule(job) or sync_unschedule(name): remove a job; true.
 */
static Datum
Unschedule(FunctionCallInfo fcinfo, bool by_name)
{
	FoundJob	job;
	int64		id = by_name ? -1 : PG_GETARG_INT64(0);
	char	   *name = by_name ? text_to_cstring(PG_GETARG_TEXT_PP(0)) : NULL;
	int			save_nestlevel;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];

	SyncEnter(fcinfo);
	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	if (!FindJob(id, name, &job))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 by_name ? errmsg("no job is named \"%s\"", name) :
				 errmsg("job " INT64_FORMAT " does not exist", id),
				 errhint("Scheduled jobs are listed in sync_job.")));
	CheckMayChange(&job);
	values[0] = Int64GetDatum(job.id);
	SyncExecute(psprintf("DELETE FROM %s WHERE id = $1", SyncObject("sync_job")),
				1, argtypes, values, NULL);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_BOOL(true);
}

Datum
sync_unschedule_id(PG_FUNCTION_ARGS)
{
	return Unschedule(fcinfo, false);
}

Datum
sync_unschedule_name(PG_FUNCTION_ARGS)
{
	return Unschedule(fcinfo, true);
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
								   " RETURNING j.id, j.remote, o.running_since, $2, j.kind", job, job),
						  2, lost_types);
	/* due jobs whose owner cannot log in fail without a worker */
	plans.no_login = KeepPlan(psprintf("UPDATE %s j SET runs = runs + 1, last_run = pg_catalog.now(),"
									   "       failures = failures + 1, last_status = 'failed',"
									   "       next_run = GREATEST(" ADVANCE_SQL ", pg_catalog.now() + " BACKOFF_SQL("") ")"
									   " WHERE " DUE_SQL " AND j.running_since IS NULL"
									   "   AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles r"
									   "                    WHERE r.rolname = j.owner AND r.rolcanlogin)"
									   " RETURNING j.id, j.remote, pg_catalog.now(),"
									   "   pg_catalog.format('role %%s, the job''s owner, does not exist or cannot log in', j.owner), j.kind",
									   job),
							  0, NULL);
	plans.due = KeepPlan(psprintf("SELECT j.id, (EXTRACT(EPOCH FROM j.timeout) * 1000)::int8, r.oid,"
								  "       j.running_since IS NOT NULL"
								  "  FROM %s j JOIN pg_catalog.pg_roles r ON r.rolname = j.owner"
								  " WHERE " DUE_SQL
								  " ORDER BY j.next_run", job),
						 0, NULL);
	plans.skip = KeepPlan(psprintf("UPDATE %s SET next_run = " ADVANCE_SQL " WHERE id = $1"
								   " RETURNING kind, remote", job),
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

/*
 * Log a scheduled run the launcher settled without a worker: a job of kind
 * "pull" or "dump", of machine remote (-1: none).
 */
static void
LogRun(int64 job, const char *kind, int64 remote, TimestampTz started,
	   const char *status, const char *message)
{
	SyncLogEntry entry;

	SyncLogInit(&entry, kind);
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
 * and plans.no_login, which return job, remote, start, message and kind).
 */
static void
LogFailedRuns(int n)
{
	int64	   *jobs = palloc(sizeof(int64) * (n + 1));
	int64	   *remotes = palloc(sizeof(int64) * (n + 1));
	TimestampTz *starts = palloc(sizeof(TimestampTz) * (n + 1));
	char	  **messages = palloc(sizeof(char *) * (n + 1));
	char	  **kinds = palloc(sizeof(char *) * (n + 1));
	int			i;

	/* copied out: logging runs statements of its own */
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		SyncGetInt64(i, 1, &jobs[i]);
		if (!SyncGetInt64(i, 2, &remotes[i]))
			remotes[i] = -1;
		starts[i] = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 3, &isnull));
		messages[i] = SyncGetText(i, 4);
		kinds[i] = SyncGetText(i, 5);
	}
	for (i = 0; i < n; i++)
		LogRun(jobs[i], kinds[i], remotes[i], starts[i], "failed", messages[i]);
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
			int64		remote;

			/* never two runs of a job at once: this one is skipped */
			if (RunPlan(plans.skip, values) > 0)
			{
				if (!SyncGetInt64(0, 2, &remote))
					remote = -1;
				LogRun(due[i].id, SyncGetText(0, 1), remote,
					   GetCurrentTransactionStartTimestamp(), "skipped",
					   "the previous run is still going");
			}
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

/* What a job worker runs, as BeginJob read it. */
typedef struct JobWork
{
	bool		dump;			/* a dump of this server, or a pull */
	int64		remote;			/* pull: the machine */
	int32		level;			/* dump: sync_dump's arguments */
	bool		anonymize;
	bool		unchecked;
	bool		push;			/* dump: push after it */
	int64		timeout_ms;
} JobWork;

/*
 * The job worker's start: mark the run under way, and read what to do and
 * the timeout; false if the job is gone (dropped or unscheduled
 * meanwhile).
 */
static bool
BeginJob(int64 job, JobWork *work)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job)};
	bool		found;

	SyncWorkerBegin(true);
	found = OidIsValid(ExtensionSchema()) &&
		JobStatementAsLauncher(psprintf("UPDATE %s SET running_pid = pg_catalog.pg_backend_pid(),"
										"  running_since = COALESCE(running_since, pg_catalog.now()) WHERE id = $1"
										" RETURNING kind = 'dump', remote, level, anonymize, unchecked,"
										"   (EXTRACT(EPOCH FROM timeout) * 1000)::int8, push",
										SyncObject("sync_job")),
							   1, argtypes, values) > 0;
	if (found)
	{
		int64		level = 0;

		work->dump = SyncGetBool(0, 1);
		if (!SyncGetInt64(0, 2, &work->remote))
			work->remote = -1;
		(void) SyncGetInt64(0, 3, &level);
		work->level = (int32) level;
		work->anonymize = work->dump && SyncGetBool(0, 4);
		work->unchecked = work->dump && SyncGetBool(0, 5);
		SyncGetInt64(0, 6, &work->timeout_ms);
		work->push = work->dump && SyncGetBool(0, 7);
	}
	SyncWorkerCommit();
	return found;
}

/*
 * Call the function name(argtypes) of the extension with nargs args, as
 * the job's owner (who needs EXECUTE on it), directly rather than through
 * a query: an error then says what the function said, without a line on
 * the query that ran it.  Returns its row.
 */
static HeapTupleHeader
CallOwnFunction(const char *name, const char *argtypes, int nargs, NullableDatum *args)
{
	Oid			fn_oid = OwnFunction(name, argtypes);
	AclResult	aclresult;
	FmgrInfo	flinfo;
	Datum		result;

	LOCAL_FCINFO(call, 6);

	aclresult = pg_proc_aclcheck(fn_oid, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(fn_oid));
	fmgr_info(fn_oid, &flinfo);
	InitFunctionCallInfoData(*call, &flinfo, nargs, InvalidOid, NULL, NULL);
	memcpy(call->args, args, sizeof(NullableDatum) * nargs);
	result = FunctionCallInvoke(call);
	if (call->isnull)
		elog(ERROR, "%s%s returned null", name, argtypes);
	return DatumGetHeapTupleHeader(result);
}

/*
 * The pull or dump, under the job's timeout, which ends before the commit;
 * returns the status to record (a pull's status, or the kind of a dump),
 * and sets *error for a failure, which it also writes to the server log
 * with all its fields: nobody watches a scheduled run.
 */
static const char *
RunJob(int64 job, const JobWork *work, ErrorData **error)
{
	const char *volatile status = "applied";

	PG_TRY();
	{
		NullableDatum args[6];
		HeapTupleHeader result;
		bool		isnull;

		enable_timeout_after(STATEMENT_TIMEOUT, (int) Min(work->timeout_ms, INT_MAX));
		/* in the owner's own settings, as an interactive run would be */
		SyncWorkerBegin(false);
		memset(args, 0, sizeof(args));
		if (work->dump)
		{
			args[0].value = Int32GetDatum(work->level);
			args[1].value = BoolGetDatum(work->anonymize);
			args[2].value = BoolGetDatum(work->unchecked);
			args[3].value = BoolGetDatum(false);
			result = CallOwnFunction("sync_dump", "(integer, boolean, boolean, boolean)", 4, args);
			/* a push that fails fails the run: the next run pushes again */
			if (work->push)
				(void) CallOwnFunction("sync_push", "()", 0, args);
		}
		else
		{
			/* all tables, from its sync_url, applied */
			args[0].value = Int64GetDatum(work->remote);
			args[1].value = BoolGetDatum(false);
			args[2].value = BoolGetDatum(false);
			args[3].isnull = args[4].isnull = args[5].isnull = true;
			result = CallOwnFunction("sync_pull", "(bigint, boolean, boolean, regclass[], regclass[], text)",
									 6, args);
		}
		status = MemoryContextStrdup(TopMemoryContext,
									 TextDatumGetCString(GetAttributeByName(result, work->dump ? "kind" : "status",
																			&isnull)));
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
		if (edata->message == NULL)
			edata->message = "unknown error";
		*error = edata;
	}
	PG_END_TRY();

	if (*error != NULL)
	{
		ErrorData	report = **error;
		bool		context = (report.context != NULL && report.context[0] != '\0');

		/* the same message, detail, hint and context, at LOG */
		report.elevel = LOG;
		report.output_to_client = false;
		report.output_to_server = true;
		report.context = psprintf("%s%ssync job " INT64_FORMAT " (%s)",
								  context ? report.context : "",
								  context ? "\n" : "", job,
								  work->dump ? "dump" :
								  psprintf("pull of machine " INT64_FORMAT, work->remote));
		ThrowErrorData(&report);
	}
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
	JobWork		work;
	Oid			argtypes[3] = {INT8OID, TEXTOID, BOOLOID};
	Datum		values[3];
	const char *status;
	bool		ok;
	uint64		writes = sync_log_writes;
	TimestampTz started;
	ErrorData  *error = NULL;

	memcpy(ids, MyBgworkerEntry->bgw_extra, sizeof(ids));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(ids[0], ids[1], 0);
	sync_current_job = job;

	memset(&work, 0, sizeof(work));
	if (!BeginJob(job, &work))
		proc_exit(0);
	pgstat_report_appname(psprintf("sync job " INT64_FORMAT, job));
	started = GetCurrentTimestamp();
	status = RunJob(job, &work, &error);
	ok = (error == NULL);

	/* a run that failed before the pull or dump could record it (no privilege) */
	if (!ok && sync_log_writes == writes)
	{
		SyncLogEntry entry;

		SyncLogInit(&entry, work.dump ? "dump" : "pull");
		entry.machine_id = work.remote;
		entry.started_at = started;
		entry.finished_at = GetCurrentTimestamp();
		entry.status = status;
		SyncLogSetError(&entry, error);
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
