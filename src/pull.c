/*-------------------------------------------------------------------------
 *
 * pull.c
 *		sync_pull(remote): fetch what another machine published and merge
 *		it in, all or nothing.
 *
 * A pull reads the machine's index; if the archive it names is the one
 * applied last time, nothing more happens ('unchanged').  Otherwise the
 * archive is downloaded into sync.work_directory and checked before any
 * row is touched: its size and SHA-256 against the index, the header's
 * format, source machine and range, every table's checksum and row count
 * against the manifest, and every key against the machine's range.  Only
 * then is it applied (apply.c), in the caller's transaction.  A pull whose
 * tables' on_conflict left rows out is 'partial': the rows left out arrive
 * at a later pull, once the conflict is gone.
 *
 * The pull runs in a subtransaction: on any failure the subscriber is
 * exactly as before, the downloaded file is removed, the failure is
 * recorded in sync_log (in a transaction of its own), and the error is
 * raised again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "apply.h"
#include "archive.h"
#include "fetch.h"
#include "format.h"
#include "guard.h"
#include "log.h"
#include "progress.h"
#include "registry.h"
#include "remote.h"
#include "settings.h"

PG_FUNCTION_INFO_V1(sync_pull_id);
PG_FUNCTION_INFO_V1(sync_pull_name);
PG_FUNCTION_INFO_V1(sync_verify_id);
PG_FUNCTION_INFO_V1(sync_verify_name);

/* the default work directory: PostgreSQL's own temporary file directory */
#define SYNC_DEFAULT_WORK_DIR "base/" PG_TEMP_FILES_DIR

/*
 * downloads are named as PostgreSQL's temporary files, which a server
 * start removes from its temporary file directory
 */
#define SYNC_DOWNLOAD_PREFIX PG_TEMP_FILE_PREFIX "_sync_pull_"

/* the largest header and manifest read */

/* What one call of sync_pull works with. */
typedef struct PullRun
{
	Pull		pull;
	SyncRemote	remote;
	const char *status;			/* 'applied', 'partial' or 'unchanged' */
	bool		full;			/* merge every table, whatever its checksum */
	int64		local_changed;	/* this server's rows its triggers changed */
	uint64		bytes;
	char	   *tmp_path;		/* downloaded archive, while it exists */
	char	   *archive_sha256;
	MemoryContext cxt;			/* outlives SPI and the subtransaction */
	bool		by_name;		/* what sync_pull was asked for */
	int64		id;
	const char *hostname;
	TimestampTz duration;		/* of the whole call, once logged */
} PullRun;

/* the download of this backend, removed at exit if an error did not */
static char current_download[MAXPGPATH];

static void
RemoveDownloadAtExit(int code, Datum arg)
{
	if (current_download[0])
		(void) unlink(current_download);
	current_download[0] = '\0';
}

/*
 * Checksum of the archive the last successful pull of this machine applied,
 * or NULL.
 */
static char *
LastAppliedArchive(PullRun *run)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run->pull.machine_id)};

	if (SyncExecute(psprintf("SELECT archive_sha256 FROM %s WHERE machine_id = $1",
							 SyncObject("sync_pull_state")),
					1, argtypes, values, NULL) > 0)
		return SyncGetText(0, 1);
	return NULL;
}

/*
 * The directory downloads go to.  In a directory of its own choosing, the
 * downloads of backends that are gone (a crash) are removed here.
 */
static const char *
WorkDirectory(void)
{
	struct stat st;
	bool		custom = (sync_work_directory && sync_work_directory[0]);
	const char *dir = custom ? sync_work_directory : SYNC_DEFAULT_WORK_DIR;

	if (!custom)
		(void) MakePGDirectory(dir);
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not use work directory \"%s\": %m", dir),
				 errhint("Set sync.work_directory to an existing directory the server can write.")));
	if (custom)
	{
		DIR		   *d = AllocateDir(dir);
		struct dirent *de;
		char	   *prefix = psprintf(SYNC_DOWNLOAD_PREFIX UINT64_FORMAT "_", GetSystemIdentifier());

		while ((de = ReadDir(d, dir)) != NULL)
		{
			int			pid;

			if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
				sscanf(de->d_name + strlen(prefix), "%d", &pid) == 1 &&
				pid != MyProcPid && kill(pid, 0) != 0 && errno == ESRCH)
				(void) unlink(psprintf("%s/%s", dir, de->d_name));
		}
		FreeDir(d);
	}
	return dir;
}

/*
 * Download the archive the index names, and check it against the index.
 */
static void
Download(PullRun *run, const SyncIndex *index)
{
	SyncFetchResult result;
	char		got[SYNC_SHA256_HEX_LEN];
	int			fd;
	static bool exit_hook = false;

	if (!exit_hook)
	{
		on_proc_exit(RemoveDownloadAtExit, (Datum) 0);
		exit_hook = true;
	}
	run->tmp_path = MemoryContextStrdup(run->cxt,
										psprintf("%s/" SYNC_DOWNLOAD_PREFIX UINT64_FORMAT "_%d_" INT64_FORMAT,
												 WorkDirectory(), GetSystemIdentifier(), MyProcPid,
												 run->pull.machine_id));
	(void) unlink(run->tmp_path);
	strlcpy(current_download, run->tmp_path, sizeof(current_download));
	fd = OpenTransientFilePerm(run->tmp_path, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY,
							   S_IRUSR | S_IWUSR);
	if (fd < 0)
	{
		run->tmp_path = NULL;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file in sync.work_directory: %m")));
	}

	SyncReportProgress(run->pull.machine_id, "downloading", NULL, 0, 0);
	SyncFetchArchive(&run->remote, index->archive, fd, got, &result);
	run->bytes += result.bytes;
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write downloaded archive \"%s\": %m", run->tmp_path)));

	if (result.bytes != index->size)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("archive of machine " INT64_FORMAT " has " UINT64_FORMAT " bytes, not the " UINT64_FORMAT " its index gives",
						run->pull.machine_id, result.bytes, index->size),
				 errdetail("The download of %s was truncated, or the archive changed meanwhile.",
						   SyncRemoteUrl(&run->remote, index->archive)),
				 errhint("Pull again; if it persists, check the web server of machine " INT64_FORMAT ".",
						 run->pull.machine_id)));
	if (strcmp(got, index->sha256) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("checksum of the archive of machine " INT64_FORMAT " does not match its index",
						run->pull.machine_id),
				 errdetail("SHA-256 of %s is %s; the index says %s.",
						   SyncRemoteUrl(&run->remote, index->archive), got, index->sha256)));
	run->pull.archive_path = run->tmp_path;
}

/*
 * Take the tables the header describes into the pull, and point the
 * header at them, for the manifest to fill in.
 */
static void
TakeTables(Pull *pull, SyncArchiveHeader *header)
{
	int			i;

	pull->ntables = header->ntables;
	pull->tables = palloc0(sizeof(PullTable) * (header->ntables + 1));
	for (i = 0; i < header->ntables; i++)
	{
		pull->tables[i].at = *header->tables[i];
		header->tables[i] = &pull->tables[i].at;
	}
	pull->registry.at = *header->registry;
	header->registry = &pull->registry.at;
}

/* The table of the archive whose files are in member name's directory. */
static PullTable *
MemberTable(Pull *pull, const char *name)
{
	int			i;

	if (SyncMemberOf(name, pull->registry.at.dir))
		return &pull->registry;
	for (i = 0; i < pull->ntables; i++)
		if (SyncMemberOf(name, pull->tables[i].at.dir))
			return &pull->tables[i];
	SyncBadArchive(pull->machine_id, "archive",
				   psprintf("It holds \"%s\", which its header does not describe.",
							SyncPrintable(name, strlen(name))));
}

/*
 * Every table's data must be there, and match the manifest's checksum and
 * row count.
 */
static void
CheckAgainstManifest(Pull *pull)
{
	int			i;

	for (i = -1; i < pull->ntables; i++)
	{
		PullTable  *t = (i < 0) ? &pull->registry : &pull->tables[i];

		/* an empty table has an empty file; so this is damage */
		if (!t->seen)
			SyncBadArchive(pull->machine_id, "archive",
						   psprintf("The files of %s are missing.", t->at.qualname));
		if (strcmp(t->at.sha256, t->sha256) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("checksum of table %s in the archive of machine " INT64_FORMAT " does not match its manifest",
							t->at.qualname, pull->machine_id),
					 errdetail("SHA-256 of its rows is %s; the manifest says %s.",
							   t->sha256, t->at.sha256[0] ? t->at.sha256 : "nothing")));
		if (t->at.rows != t->rows)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("table %s in the archive of machine " INT64_FORMAT " has " INT64_FORMAT " rows, not the " INT64_FORMAT " its manifest gives",
							t->at.qualname, pull->machine_id, t->rows, t->at.rows)));
		/* a size given must be the size read (a publisher of 0.2 gives none) */
		if (t->at.bytes != -1 && t->at.bytes != t->bytes)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("table %s in the archive of machine " INT64_FORMAT " has " INT64_FORMAT " bytes, not the " INT64_FORMAT " its manifest gives",
							t->at.qualname, pull->machine_id, t->bytes, t->at.bytes)));
	}
}

/* Finish reading the data of table t: its framing must end whole. */
static void
EndTable(Pull *pull, PullTable *t, SyncRowScan *scan, pg_cryptohash_ctx *sha)
{
	const char *error = SyncRowScanEnd(scan);

	if (error)
		SyncBadArchive(pull->machine_id, "archive",
					   psprintf("The data of %s: %s", t->at.qualname, error));
	SyncSha256Finish(sha, t->sha256);
	t->rows = scan->rows;
	t->bytes = scan->bytes;
}

/*
 * First pass over the archive, touching nothing: header, then every
 * table's files (checksum, framing of its rows), then the manifest, whose
 * checksums, counts and sizes must match.  The keys are checked when the
 * rows are loaded, by COPY (load.c).
 */
static void
ValidateArchive(PullRun *run)
{
	Pull	   *pull = &run->pull;
	SyncArchiveReader *reader;
	SyncArchiveHeader header;
	char	   *name;
	char	   *text;
	uint64		size;
	char	   *buf = palloc(65536);
	PullTable  *current = NULL;
	pg_cryptohash_ctx *sha = NULL;
	SyncRowScan scan;
	bool		have_manifest = false;

	SyncReportProgress(pull->machine_id, "verifying", NULL, 0, 0);
	reader = SyncArchiveOpen(pull->archive_path, (uint64) sync_max_unpacked_kb * 1024);
	if (!SyncArchiveNext(reader, &name, &size) || strcmp(name, SYNC_HEADER_MEMBER) != 0)
		SyncBadArchive(pull->machine_id, "archive", "It does not start with " SYNC_HEADER_MEMBER ".");
	text = SyncArchiveReadAll(reader, size, SYNC_MAX_HEADER, "header");
	SyncReadHeader(text, size, pull->machine_id, &pull->range, &header);
	TakeTables(pull, &header);

	while (SyncArchiveNext(reader, &name, &size))
	{
		PullTable  *t;
		size_t		n;

		if (have_manifest)
			SyncBadArchive(pull->machine_id, "archive", "Something follows the manifest.");
		if (strcmp(name, SYNC_MANIFEST_MEMBER) == 0)
		{
			text = SyncArchiveReadAll(reader, size, SYNC_MAX_MANIFEST, "manifest");
			SyncReadManifest(text, size, &header);
			have_manifest = true;
			continue;
		}
		t = MemberTable(pull, name);
		if (t != current)
		{
			if (t->seen)
				SyncBadArchive(pull->machine_id, "archive",
							   psprintf("The files of %s are not together.", t->at.qualname));
			if (current)
				EndTable(pull, current, &scan, sha);
			current = t;
			t->seen = true;
			sha = SyncSha256Begin();
			memset(&scan, 0, sizeof(scan));
			SyncReportProgress(pull->machine_id, "verifying", t->at.qualname, 0, 0);
		}
		while ((n = SyncArchiveRead(reader, buf, 65536)) > 0)
		{
			const char *error;

			if (pg_cryptohash_update(sha, (uint8 *) buf, n) < 0)
				elog(ERROR, "could not update SHA-256 digest");
			if ((error = SyncRowScanData(&scan, buf, n)) != NULL)
				SyncBadArchive(pull->machine_id, "archive",
							   psprintf("The data of %s: %s", t->at.qualname, error));
		}
	}
	if (current)
		EndTable(pull, current, &scan, sha);
	pull->unpacked = SyncArchiveUnpacked(reader);
	SyncArchiveClose(reader);

	if (!have_manifest)
		SyncBadArchive(pull->machine_id, "archive", "It has no manifest.");
	CheckAgainstManifest(pull);
}

/*
 * Record what this pull applied, for the next one to skip what is
 * unchanged.
 */
static void
SavePullState(PullRun *run)
{
	Pull	   *pull = &run->pull;
	StringInfoData shas;
	Oid			argtypes[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";
	int			i;

	initStringInfo(&shas);
	appendStringInfoChar(&shas, '{');
	for (i = 0; i < pull->ntables; i++)
	{
		/* a table skipped, or applied without some columns, is applied again */
		if (!pull->tables[i].complete)
			continue;
		if (shas.len > 1)
			appendStringInfoString(&shas, ", ");
		escape_json(&shas, pull->tables[i].at.qualname);
		appendStringInfo(&shas, ": \"%s\"", pull->tables[i].sha256);
	}
	appendStringInfoChar(&shas, '}');

	/*
	 * The archive counts as applied only if every table of it was: else the
	 * next pull reads it again (tables applied whole are still skipped).
	 */
	values[0] = Int64GetDatum(pull->machine_id);
	values[1] = CStringGetTextDatum(run->archive_sha256);
	values[2] = CStringGetTextDatum(shas.data);
	for (i = 0; i < pull->ntables; i++)
		if (!pull->tables[i].complete)
			nulls[1] = 'n';
	SyncExecute(psprintf("INSERT INTO %s AS s (machine_id, archive_sha256, table_sha256, applied_at)"
						 " VALUES ($1, $2, $3::pg_catalog.jsonb, pg_catalog.now())"
						 " ON CONFLICT (machine_id) DO UPDATE SET"
						 "   archive_sha256 = EXCLUDED.archive_sha256,"
						 "   table_sha256 = EXCLUDED.table_sha256, applied_at = EXCLUDED.applied_at",
						 SyncObject("sync_pull_state")),
				3, argtypes, values, nulls);
}

/*
 * Mark the tables whose checksum equals the one applied last time: their
 * rows need not be read again, unless rows of the machine were written
 * here since (written, the OIDs of writable tables): those are merged
 * again, and the owner's version wins.
 */
static void
MarkUnchanged(Pull *pull, List *written)
{
	ListCell   *lc;
	int			i;

	for (i = 0; i < pull->ntables; i++)
	{
		Oid			argtypes[3] = {INT8OID, TEXTOID, TEXTOID};
		Datum		values[3];
		bool		rewrite = false;

		foreach(lc, written)
			if (strcmp(SyncRelationName(lfirst_oid(lc)), pull->tables[i].at.qualname) == 0)
				rewrite = true;
		if (rewrite)
			continue;

		values[0] = Int64GetDatum(pull->machine_id);
		values[1] = CStringGetTextDatum(pull->tables[i].at.qualname);
		values[2] = CStringGetTextDatum(pull->tables[i].sha256);
		if (SyncExecute(psprintf("SELECT 1 FROM %s WHERE machine_id = $1 AND table_sha256->>$2 = $3",
								 SyncObject("sync_pull_state")),
						3, argtypes, values, NULL) > 0)
			pull->tables[i].unchanged = true;
	}
}

/*
 * The pull itself, inside the caller's subtransaction.
 */
static void
RunPull(PullRun *run)
{
	Pull	   *pull = &run->pull;
	SyncMachine local;
	SyncMachine machine;
	char	   *last_sha;
	char	   *index_text;
	size_t		index_len;
	SyncIndex	index;
	SyncFetchResult result;
	List	   *written;
	int			save_nestlevel;

	/* names resolve to built-ins */
	save_nestlevel = SyncPinSettings(false);
	SPI_connect();

	SyncRequireLocalMachine(&local);
	SyncFindMachine(run->by_name, run->id, run->hostname, &machine);
	pull->machine_id = machine.id;
	pull->range = machine.range;
	if (machine.id == local.id)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("machine " INT64_FORMAT " is this server", local.id),
				 errdetail("A server publishes its own rows; it pulls only other machines'.")));

	/* one pull of a machine at a time; pulls of different machines run at once */
	{
		Oid			argtypes[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(pull->machine_id)};

		SyncExecute("SELECT pg_catalog.pg_advisory_xact_lock(" CppAsString2(SYNC_LOCK_PULL) ", pg_catalog.hashint8($1))",
					1, argtypes, values, NULL);
	}

	SyncReadRemote(&machine, &run->remote);
	last_sha = (run->full || pull->verify) ? NULL : LastAppliedArchive(run);
	written = pull->verify ? NIL : SyncWrittenTables(pull->machine_id);

	/*
	 * The index is small: always fetch it and compare checksums.  (An ETag
	 * is no safe test: nginx's, for one, is the file's size and mtime in
	 * whole seconds, the same for two dumps in the same second.)
	 */
	SyncReportProgress(pull->machine_id, "checking", NULL, 0, 0);
	index_text = SyncFetchIndex(&run->remote, &result, &index_len);
	run->bytes += result.bytes;
	SyncReadIndex(index_text, index_len, pull->machine_id,
				  SyncRemoteUrl(&run->remote, SYNC_INDEX_NAME), &index);
	run->archive_sha256 = MemoryContextStrdup(run->cxt, index.sha256);
	if (last_sha && written == NIL && strcmp(last_sha, run->archive_sha256) == 0)
		run->status = "unchanged";
	else if (pull->verify)
	{
		Download(run, &index);
		ValidateArchive(run);
		SyncVerifyArchive(pull);
	}
	else
	{
		Download(run, &index);
		ValidateArchive(run);
		if (!run->full)
			MarkUnchanged(pull, written);

		/* the guard lets this pull write the machine's rows, and counts ours */
		SyncGuardBeginPull(pull->machine_id);
		SyncApplyArchive(pull);
		run->local_changed = SyncGuardEndPull();
		SyncForgetWritten(pull->machine_id, InvalidOid);
		SavePullState(run);
		/* rows on_conflict left out: the pull succeeded, not whole */
		run->status = (pull->skipped > 0) ? "partial" : "applied";
	}
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
}

/*
 * Remove the downloaded archive, if there is one.  (Its descriptor is
 * closed by then, or by the abort of a failed pull.)
 */
static void
RemoveDownload(void *arg)
{
	PullRun    *run = (PullRun *) arg;

	if (run->tmp_path)
	{
		if (unlink(run->tmp_path) != 0 && errno != ENOENT)
			elog(WARNING, "could not remove downloaded archive \"%s\": %m", run->tmp_path);
		run->tmp_path = NULL;
		current_download[0] = '\0';
	}
}

/* The pull, run in a subtransaction by DoPull. */
static void
PullBody(void *arg)
{
	RunPull((PullRun *) arg);
	RemoveDownload(arg);
}

/* the timeout that bounds a pull (registered at the first), and its flag */
static TimeoutId pull_timeout = MAX_TIMEOUTS;
static volatile sig_atomic_t pull_timed_out = false;

/*
 * Timeout handler (in a signal handler): cancel the pull as a query cancel
 * would; DoPull reports it as a timeout.
 */
static void
PullTimeoutHandler(void)
{
	pull_timed_out = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/* The log entry of a successful pull or verification, and its details. */
static void
LogApplied(PullRun *run, SyncLogEntry *log)
{
	Pull	   *pull = &run->pull;
	StringInfoData details;
	ListCell   *lc;
	int			i;

	log->machine_id = pull->machine_id;
	log->finished_at = GetCurrentTimestamp();
	log->status = run->status;
	log->tables = pull->ntables;
	log->bytes = (int64) run->bytes;
	initStringInfo(&details);
	appendStringInfoString(&details, "{\"warnings\": [");
	foreach(lc, pull->warnings)
	{
		if (lc != list_head(pull->warnings))
			appendStringInfoString(&details, ", ");
		escape_json(&details, lfirst(lc));
	}
	appendStringInfoString(&details, "]");
	if (pull->verify)
	{
		/* what differs, per table */
		appendStringInfoString(&details, ", \"differs\": {");
		for (i = 0; i < pull->ntables; i++)
		{
			PullTable  *t = &pull->tables[i];

			if (t->missing + t->extra + t->changed == 0)
				continue;
			if (details.data[details.len - 1] != '{')
				appendStringInfoString(&details, ", ");
			escape_json(&details, t->at.qualname);
			appendStringInfo(&details, ": {\"missing\": " INT64_FORMAT ", \"extra\": " INT64_FORMAT
							 ", \"changed\": " INT64_FORMAT "}",
							 t->missing, t->extra, t->changed);
		}
		appendStringInfoChar(&details, '}');
	}
	else
	{
		log->inserted = pull->inserted;
		log->updated = pull->updated;
		log->deleted = pull->deleted;
		log->local_changed = run->local_changed;
		if (run->full)
			appendStringInfoString(&details, ", \"full\": true");
	}
	if (pull->skipped_json)
		appendStringInfo(&details, ", \"skipped\": %s", pull->skipped_json);
	if (run->archive_sha256)
		appendStringInfo(&details, ", \"sha256\": \"%s\"", run->archive_sha256);
	appendStringInfoChar(&details, '}');
	log->details = details.data;
	log->message = pull->warnings ? psprintf("%d warning(s)", list_length(pull->warnings)) : NULL;
	SyncLogCommitted(log);
}

/*
 * Common body of sync_pull and sync_verify: run it in a subtransaction
 * within sync.timeout, and log it (a failure is logged and raised again).
 */
static PullRun *
DoPull(FunctionCallInfo fcinfo, bool by_name, bool verify)
{
	PullRun    *run = palloc0(sizeof(PullRun));
	SyncLogEntry *log = palloc(sizeof(SyncLogEntry));
	ErrorData  *edata;

	SyncEnter(fcinfo);
	run->pull.machine_id = -1;
	run->cxt = run->pull.cxt = CurrentMemoryContext;
	run->pull.session_path = pstrdup(GetConfigOption("search_path", false, false));
	run->pull.verify = verify;
	run->by_name = by_name;
	run->id = by_name ? -1 : PG_GETARG_INT64(0);
	run->hostname = by_name ? text_to_cstring(PG_GETARG_TEXT_PP(0)) : NULL;
	run->full = !verify && PG_GETARG_BOOL(1);
	SyncLogInit(log, verify ? "verify" : "pull");

	/* sync.timeout bounds the whole pull: download, checks and merge */
	if (pull_timeout == MAX_TIMEOUTS)
		pull_timeout = RegisterTimeout(USER_TIMEOUT, PullTimeoutHandler);
	pull_timed_out = false;
	enable_timeout_after(pull_timeout, sync_timeout);
	edata = SyncRunInSubtransaction(PullBody, RemoveDownload, run);
	disable_timeout(pull_timeout, false);
	/* whatever happened, the guard no longer lets anything through */
	(void) SyncGuardEndPull();
	/* fired just as the pull ended: the cancel it asked for is moot */
	if (pull_timed_out && edata == NULL)
		QueryCancelPending = false;
	SyncReportDone();
	if (edata)
	{
		log->machine_id = run->pull.machine_id;
		log->bytes = (int64) run->bytes;
		if (pull_timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		{
			edata->message = psprintf("%s of machine " INT64_FORMAT " took longer than sync.timeout (%d ms)",
									  verify ? "verification" : "pull",
									  run->pull.machine_id, sync_timeout);
			edata->detail = verify ?
				pstrdup("Downloading, checking and comparing an archive must end within sync.timeout.") :
				pstrdup("Downloading, checking and applying an archive must end within sync.timeout; nothing was applied.");
			edata->hint = pstrdup("Raise sync.timeout for a larger archive or a slower link.");
			log->status = "timeout";
		}
		/* a scheduled run past its timeout was cancelled */
		if (sync_current_job > 0 && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			log->status = "timeout";
		SyncLogFailure(log, edata);
	}
	if (verify)
	{
		int			i;

		run->status = "same";
		for (i = 0; i < run->pull.ntables; i++)
			if (run->pull.tables[i].missing + run->pull.tables[i].extra +
				run->pull.tables[i].changed > 0)
				run->status = "differs";
	}
	LogApplied(run, log);
	run->duration = log->finished_at - log->started_at;
	return run;
}

/* The result row of sync_pull. */
static Datum
PullResult(FunctionCallInfo fcinfo, PullRun *run)
{
	Datum		values[9];
	bool		nulls[9] = {false};
	Interval   *duration = palloc0(sizeof(Interval));

	duration->time = run->duration;
	values[0] = Int64GetDatum(run->pull.machine_id);
	values[1] = CStringGetTextDatum(run->status);
	values[2] = Int32GetDatum(run->pull.ntables);
	values[3] = Int64GetDatum(run->pull.inserted);
	values[4] = Int64GetDatum(run->pull.updated);
	values[5] = Int64GetDatum(run->pull.deleted);
	values[6] = Int64GetDatum((int64) run->bytes);
	values[7] = IntervalPGetDatum(duration);
	values[8] = Int64GetDatum(run->local_changed);
	PG_RETURN_DATUM(SyncResultRow(fcinfo, values, nulls));
}

/*
 * sync_pull(remote bigint, full boolean) returns (machine_id, status,
 * tables, inserted, updated, deleted, bytes, duration, local_changed)
 */
Datum
sync_pull_id(PG_FUNCTION_ARGS)
{
	return PullResult(fcinfo, DoPull(fcinfo, false, false));
}

/*
 * sync_pull(remote text, full boolean): the same, by hostname.
 */
Datum
sync_pull_name(PG_FUNCTION_ARGS)
{
	return PullResult(fcinfo, DoPull(fcinfo, true, false));
}

/*
 * The rows of sync_verify: one per table of the archive registered here,
 * in the archive's order (parents first).
 */
static Datum
VerifyResult(FunctionCallInfo fcinfo, bool by_name)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PullRun    *run;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	run = DoPull(fcinfo, by_name, true);
	for (i = 0; i < run->pull.ntables; i++)
	{
		PullTable  *t = &run->pull.tables[i];
		Datum		values[7];
		bool		nulls[7] = {false};

		if (!OidIsValid(t->relid))
			continue;
		values[0] = ObjectIdGetDatum(t->relid);
		values[1] = Int64GetDatum(t->missing);
		values[2] = Int64GetDatum(t->extra);
		values[3] = Int64GetDatum(t->changed);
		values[4] = t->first_missing;
		values[5] = t->first_extra;
		values[6] = t->first_changed;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * sync_verify(remote bigint) returns setof (tbl, missing, extra, changed,
 * first_missing, first_extra, first_changed)
 */
Datum
sync_verify_id(PG_FUNCTION_ARGS)
{
	return VerifyResult(fcinfo, false);
}

/*
 * sync_verify(remote text): the same, by hostname.
 */
Datum
sync_verify_name(PG_FUNCTION_ARGS)
{
	return VerifyResult(fcinfo, true);
}
