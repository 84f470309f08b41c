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
#include "utils/array.h"
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
#include "tables.h"

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


/* What one call of sync_pull works with. */
typedef struct PullRun
{
	Pull		pull;
	SyncRemote	remote;
	const char *status;			/* 'applied', 'partial' or 'unchanged' */
	bool		full;			/* merge every table, whatever its checksum */
	bool		dry_run;		/* undo all, report what would change */
	char	   *source;			/* URL to read from instead of sync_url */
	int64		local_changed;	/* this server's rows its triggers changed */
	uint64		bytes;
	char	   *tmp_path;		/* the last archive downloaded */
	List	   *downloads;		/* every download, while it exists */
	char	   *archive_sha256;
	MemoryContext cxt;			/* outlives SPI and the subtransaction */
	bool		by_name;		/* what sync_pull was asked for */
	int64		id;
	const char *hostname;
	TimestampTz duration;		/* of the whole call, once logged */

	/* the publisher's chain: what was applied of it, and how */
	SyncIndex	index;
	char	   *chain;			/* as applied here before, or NULL */
	int64		seq;
	List	   *digests;		/* ChainTable, per table */
	const char *path;			/* 'delta' or 'full' */
	char	   *fallback;		/* why a delta path fell back to full */
	int			archives;		/* files applied */
	uint64		unpacked_total; /* of the archives of this pull, so far */
	int64		rows_total;		/* their rows and deleted keys */
	char	   *hdr_chain;		/* what the archive being read says */
	int64		hdr_seq;
} PullRun;

/* One table's digest, as applied here of a publisher's chain. */
typedef struct ChainTable
{
	char	   *qualname;
	uint64		digest;
	int64		rows;
	bool		applied;		/* registered here with all its columns */
} ChainTable;

static void MarkUnchanged(Pull *pull, List *written);
static void ReadPullOptions(FunctionCallInfo fcinfo, PullRun *run);
static void RemoveDownload(void *arg);

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
Download(PullRun *run, const char *archive, uint64 size, const char *sha256)
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
										psprintf("%s/" SYNC_DOWNLOAD_PREFIX UINT64_FORMAT "_%d_" INT64_FORMAT "_%d",
												 WorkDirectory(), GetSystemIdentifier(), MyProcPid,
												 run->pull.machine_id, list_length(run->downloads)));
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
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);

		run->downloads = lappend(run->downloads, run->tmp_path);
		MemoryContextSwitchTo(oldcxt);
	}

	SyncProgressPhase("downloading", NULL);
	SyncFetchArchive(&run->remote, archive, fd, got, &result);
	run->bytes += result.bytes;
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write downloaded archive \"%s\": %m", run->tmp_path)));

	if (result.bytes != size)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("archive of machine " INT64_FORMAT " has " UINT64_FORMAT " bytes, not the " UINT64_FORMAT " its index gives",
						run->pull.machine_id, result.bytes, size),
				 errdetail("The download of %s was truncated, or the archive changed meanwhile.",
						   SyncRemoteUrl(&run->remote, archive)),
				 errhint("Pull again; if it persists, check the web server of machine " INT64_FORMAT ".",
						 run->pull.machine_id)));
	if (strcmp(got, sha256) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("checksum of the archive of machine " INT64_FORMAT " does not match its index",
						run->pull.machine_id),
				 errdetail("SHA-256 of %s is %s; the index says %s.",
						   SyncRemoteUrl(&run->remote, archive), got, sha256)));
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
		if (pull->tables[i].at.deleted)
		{
			pull->tables[i].del = palloc0(sizeof(PullTable));
			pull->tables[i].del->at = *pull->tables[i].at.deleted;
			pull->tables[i].at.deleted = &pull->tables[i].del->at;
			pull->tables[i].del->at.qualname =
				psprintf("the deleted keys of %s", pull->tables[i].at.qualname);
		}
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
	{
		if (SyncMemberOf(name, pull->tables[i].at.dir))
			return &pull->tables[i];
		if (pull->tables[i].del && SyncMemberOf(name, pull->tables[i].del->at.dir))
			return pull->tables[i].del;
	}
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

	for (i = -1; i < 2 * pull->ntables; i++)
	{
		PullTable  *t = (i < 0) ? &pull->registry :
			(i < pull->ntables) ? &pull->tables[i] : pull->tables[i - pull->ntables].del;

		if (t == NULL)
			continue;
		/* a full archive's rows must make up the digest it gives */
		if (!pull->delta && t->at.has_digest &&
			(t->at.digest != t->digest.sum || t->at.published != t->digest.rows))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("digest of table %s in the archive of machine " INT64_FORMAT " does not match its manifest",
							t->at.qualname, pull->machine_id)));
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
	/* rows are hashed whole: a row cut at the end was refused above */
	Assert(t->digest.partial.len == 0);
}

/* The rows and deleted keys of the archive just verified. */
static int64
ArchiveRows(Pull *pull)
{
	int64		rows = 0;
	int			i;

	for (i = 0; i < pull->ntables; i++)
		rows += pull->tables[i].rows + (pull->tables[i].del ? pull->tables[i].del->rows : 0);
	return rows;
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

	SyncProgressPhase("verifying", NULL);
	/* sync.max_unpacked_size bounds all the archives of a pull together */
	if (run->unpacked_total >= (uint64) sync_max_unpacked_kb * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("archives of machine " INT64_FORMAT " unpack to more than sync.max_unpacked_size together",
						pull->machine_id),
				 errhint("Raise sync.max_unpacked_size, or pull with full => true.")));
	reader = SyncArchiveOpen(pull->archive_path,
							 (uint64) sync_max_unpacked_kb * 1024 - run->unpacked_total);
	if (!SyncArchiveNext(reader, &name, &size) || strcmp(name, SYNC_HEADER_MEMBER) != 0)
		SyncBadArchive(pull->machine_id, "archive", "It does not start with " SYNC_HEADER_MEMBER ".");
	text = SyncArchiveReadAll(reader, size, SYNC_MAX_HEADER, "header");
	SyncReadHeader(text, size, pull->machine_id, &pull->range, &header);
	pull->delta = header.delta;
	run->hdr_chain = header.chain;
	run->hdr_seq = header.seq;
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
			initStringInfo(&t->digest.partial);
			SyncProgressPhase("verifying", t->at.qualname);
		}
		while ((n = SyncArchiveRead(reader, buf, 65536)) > 0)
		{
			const char *error;
			int64		before = scan.rows;

			if (pg_cryptohash_update(sha, (uint8 *) buf, n) < 0)
				elog(ERROR, "could not update SHA-256 digest");
			if ((error = SyncRowScanData(&scan, buf, n)) != NULL)
				SyncBadArchive(pull->machine_id, "archive",
							   psprintf("The data of %s: %s", t->at.qualname, error));
			SyncDigestData(&t->digest, buf, n);
			SyncProgressRows(scan.rows - before);
		}
	}
	if (current)
		EndTable(pull, current, &scan, sha);
	pull->unpacked = SyncArchiveUnpacked(reader);
	run->unpacked_total += pull->unpacked;
	SyncArchiveClose(reader);

	if (!have_manifest)
		SyncBadArchive(pull->machine_id, "archive", "It has no manifest.");
	CheckAgainstManifest(pull);

	/* what the pull's later phases go through: the rows and deleted keys */
	run->rows_total += ArchiveRows(pull);
	SyncProgressRowsTotal(run->rows_total);
}

/*
 * Record what this pull applied, for the next one to skip what is
 * unchanged: the last full archive and its tables' checksums (nothing, if
 * deltas followed it), and of a chain the state reached and the digests of
 * its tables.
 */
static void
SavePullState(PullRun *run)
{
	Pull	   *pull = &run->pull;
	StringInfoData shas;
	StringInfoData digests;
	Oid			argtypes[7] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[7] = "       ";
	TimestampTz published;
	bool		whole = (pull->skipped == 0);
	ListCell   *lc;
	int			i;

	initStringInfo(&shas);
	appendStringInfoChar(&shas, '{');
	for (i = 0; i < pull->ntables; i++)
	{
		/* a table skipped, or applied without some columns, is applied again */
		if (!pull->tables[i].complete)
			whole = false;
		/* (nor is a table whose copy is not the archive's: a delta followed) */
		if (!pull->tables[i].complete || pull->delta || pull->tables[i].folded)
			continue;
		if (shas.len > 1)
			appendStringInfoString(&shas, ", ");
		escape_json(&shas, pull->tables[i].at.qualname);
		appendStringInfo(&shas, ": \"%s\"", pull->tables[i].sha256);
	}
	appendStringInfoChar(&shas, '}');

	initStringInfo(&digests);
	appendStringInfoChar(&digests, '{');
	foreach(lc, run->digests)
	{
		ChainTable *c = lfirst(lc);

		if (digests.len > 1)
			appendStringInfoString(&digests, ", ");
		escape_json(&digests, c->qualname);
		appendStringInfo(&digests, ": {\"digest\": \"%016" INT64_MODIFIER "x\", \"rows\": " INT64_FORMAT
						 ", \"applied\": %s}", c->digest, c->rows, c->applied ? "true" : "false");
	}
	appendStringInfoChar(&digests, '}');

	/*
	 * The archive counts as applied only if every table of it was: else the
	 * next pull reads it again (tables applied whole are still skipped).
	 * Likewise a chain's state: the next pull takes the full archive.
	 */
	values[0] = Int64GetDatum(pull->machine_id);
	values[1] = CStringGetTextDatum(run->archive_sha256);
	values[2] = CStringGetTextDatum(shas.data);
	if (!whole || pull->delta)
		nulls[1] = 'n';
	nulls[3] = nulls[4] = nulls[5] = 'n';
	if (run->index.chain != NULL)
	{
		values[3] = CStringGetTextDatum(run->index.chain);
		values[4] = Int64GetDatum(run->index.seq);
		values[5] = CStringGetTextDatum(digests.data);
		nulls[3] = nulls[5] = ' ';
		/* tables not applied whole are in the digests; rows left out are not */
		nulls[4] = (pull->skipped == 0) ? ' ' : 'n';
	}
	/* when the publisher made the state applied, as its index says */
	if (SyncParseTime(run->index.created, &published))
		values[6] = TimestampTzGetDatum(published);
	else
		nulls[6] = 'n';
	SyncExecute(psprintf("INSERT INTO %s AS s (machine_id, archive_sha256, table_sha256, applied_at, chain, seq, digests, published_at)"
						 " VALUES ($1, $2, $3::pg_catalog.jsonb, pg_catalog.now(), $4, $5, $6::pg_catalog.jsonb, $7)"
						 " ON CONFLICT (machine_id) DO UPDATE SET"
						 "   archive_sha256 = EXCLUDED.archive_sha256,"
						 "   table_sha256 = EXCLUDED.table_sha256, applied_at = EXCLUDED.applied_at,"
						 "   chain = EXCLUDED.chain, seq = EXCLUDED.seq, digests = EXCLUDED.digests,"
						 "   published_at = EXCLUDED.published_at",
						 SyncObject("sync_pull_state")),
				7, argtypes, values, nulls);
}

/*
 * Read what was applied here of the machine's chain: its name, the state
 * reached (-1: none, or one not to be continued) and the digests.
 */
static void
LoadChainState(PullRun *run)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run->pull.machine_id)};
	char	   *digests;
	MemoryContext oldcxt;
	int			n;
	int			i;

	run->seq = -1;
	if (SyncExecute(psprintf("SELECT chain, seq, digests::pg_catalog.text FROM %s WHERE machine_id = $1",
							 SyncObject("sync_pull_state")),
					1, argtypes, values, NULL) == 0)
		return;
	oldcxt = MemoryContextSwitchTo(run->cxt);
	run->chain = SyncGetText(0, 1);
	if (!SyncGetInt64(0, 2, &run->seq))
		run->seq = -1;
	digests = SyncGetText(0, 3);
	MemoryContextSwitchTo(oldcxt);
	if (digests == NULL)
		return;

	{
		Oid			types[1] = {TEXTOID};
		Datum		args[1] = {CStringGetTextDatum(digests)};

		/* each table, and whether it is registered here */
		n = SyncExecute(psprintf("SELECT j.key, j.value->>'digest', (j.value->>'rows')::pg_catalog.int8,"
								 " (j.value->>'applied')::pg_catalog.bool,"
								 " EXISTS (SELECT 1 FROM %s t JOIN pg_catalog.pg_class c ON c.oid = t.tbl"
								 " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
								 " WHERE pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'"
								 " OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname) OPERATOR(pg_catalog.=) j.key)"
								 " FROM pg_catalog.jsonb_each($1::pg_catalog.jsonb) j",
								 SyncObject("sync_table")),
						1, types, args, NULL);
	}
	oldcxt = MemoryContextSwitchTo(run->cxt);
	for (i = 0; i < n; i++)
	{
		ChainTable *c = palloc0(sizeof(ChainTable));
		char	   *hex = SyncGetText(i, 2);

		c->qualname = SyncGetText(i, 1);
		c->digest = hex ? strtou64(hex, NULL, 16) : 0;
		if (!SyncGetInt64(i, 3, &c->rows))
			c->rows = -1;
		c->applied = SyncGetBool(i, 4);
		run->digests = lappend(run->digests, c);

		/*
		 * A table not applied whole (not registered, or lacking columns) that
		 * is registered here now: the next pull merges the full archive, as
		 * a full pull would every time.
		 */
		if (!c->applied && SyncGetBool(i, 5))
			run->seq = -1;
	}
	MemoryContextSwitchTo(oldcxt);
}

/* A copy of the digest entries, to go back to (in run->cxt). */
static List *
CopyDigests(PullRun *run)
{
	List	   *copy = NIL;
	ListCell   *lc;
	MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);

	foreach(lc, run->digests)
	{
		ChainTable *c = palloc(sizeof(ChainTable));

		*c = *(ChainTable *) lfirst(lc);
		copy = lappend(copy, c);
	}
	MemoryContextSwitchTo(oldcxt);
	return copy;
}

/* The digest entry of table qualname, made if asked, or NULL. */
static ChainTable *
ChainEntry(PullRun *run, const char *qualname, bool make)
{
	ListCell   *lc;
	ChainTable *c;

	foreach(lc, run->digests)
	{
		c = lfirst(lc);
		if (strcmp(c->qualname, qualname) == 0)
			return c;
	}
	if (!make)
		return NULL;
	c = MemoryContextAllocZero(run->cxt, sizeof(ChainTable));
	c->qualname = MemoryContextStrdup(run->cxt, qualname);
	run->digests = lappend(run->digests, c);
	return c;
}

/*
 * After an archive of a chain was applied: its tables' digests are now
 * the copy's (those applied here; the others are the publisher's, kept
 * to know where its chain stands).
 */
static void
NoteDigests(PullRun *run, Pull *pull, bool folded)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(run->cxt);
	bool		known;
	int			i;

	for (i = 0; i < pull->ntables; i++)
	{
		PullTable  *t = &pull->tables[i];
		ChainTable *c;

		if (!t->at.has_digest)
			continue;
		known = (ChainEntry(run, t->at.qualname, false) != NULL);
		c = ChainEntry(run, t->at.qualname, true);
		c->digest = t->at.digest;
		c->rows = t->at.published;
		/* a delta leaves a table applied as it found it */
		if (!folded)
			c->applied = (pull->delta && known) ?
				(c->applied && (t->complete || t->unchanged)) : t->complete;
	}
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Before a delta is applied: its tables without changes are skipped, and
 * the others, with prove, are proven against the digests of the copy
 * here (a table that was not applied whole here has none to prove
 * against: its proof fails, and the pull takes the full archive).
 */
static void
PrepareDelta(PullRun *run, bool prove)
{
	Pull	   *pull = &run->pull;
	int			i;

	for (i = 0; i < pull->ntables; i++)
	{
		PullTable  *t = &pull->tables[i];
		ChainTable *c = ChainEntry(run, t->at.qualname, false);

		t->prove = prove;
		t->base_digest = c ? c->digest : 0;
		/* none known: the copy here must hold no row (apply.c checks) */
		t->base_rows = (c == NULL) ? SYNC_BASE_UNKNOWN : c->applied ? c->rows : -1;

		/*
		 * Skipped only if the delta leaves the table as the copy here is;
		 * any other is staged (if need be empty) and proven, and a table
		 * not applied whole before fails its proof.
		 */
		if (t->rows == 0 && t->del->rows == 0 &&
			(!prove || (c != NULL && c->applied && c->digest == t->at.digest &&
						c->rows == t->at.published)))
			t->unchanged = true;
		t->mt.touched = t->rows + t->del->rows;
	}
}

/* Forget the archive pull read last, to read another. */
static void
ForgetArchive(Pull *pull)
{
	pull->tables = NULL;
	pull->ntables = 0;
	pull->folds = NIL;
	memset(&pull->registry, 0, sizeof(PullTable));
}

/*
 * The archive just read must be the one the index names: of its chain, a
 * delta or not, leading to state seq.
 */
static void
CheckChainHeader(PullRun *run, bool delta, int64 seq)
{
	Pull	   *pull = &run->pull;

	if (run->index.chain != NULL &&
		(run->hdr_chain == NULL || strcmp(run->hdr_chain, run->index.chain) != 0 ||
		 run->hdr_seq != seq || pull->delta != delta))
		SyncBadArchive(pull->machine_id, "archive",
					   psprintf("It is not the %s of state " INT64_FORMAT " of chain %s that the index names.",
								delta ? "delta" : "full archive", seq, run->index.chain));
	if (run->index.chain == NULL && pull->delta)
		SyncBadArchive(pull->machine_id, "archive", "It is a delta, but the index names a full archive.");
}

/*
 * Download and check delta d, which is folded into the staged rows of the
 * full archive being applied (its file is kept until the pull ends).
 */
static Pull *
FetchDelta(PullRun *run, const SyncIndexDelta *d)
{
	Pull		full = run->pull;
	Pull	   *delta = MemoryContextAlloc(run->cxt, sizeof(Pull));

	ForgetArchive(&run->pull);
	Download(run, d->archive, d->size, d->sha256);
	ValidateArchive(run);
	CheckChainHeader(run, true, d->seq);
	*delta = run->pull;
	run->pull = full;
	return delta;
}

/*
 * The deltas the full path folds into the full archive: those that follow
 * it, each downloaded and checked.
 */
static List *
FetchFolds(PullRun *run)
{
	List	   *folds = NIL;
	int			i;

	if (run->index.chain == NULL)
		return NIL;
	for (i = SyncDeltasAfter(&run->index, run->index.full_seq, NULL); i < run->index.ndeltas; i++)
		folds = lappend(folds, FetchDelta(run, &run->index.deltas[i]));
	return folds;
}

/*
 * Download, check and apply one archive of the machine: a full one, with
 * the deltas that follow it folded in (one merge, whatever their number),
 * or a delta (proven against the copy here, with prove).
 */
static void
ApplyFile(PullRun *run, const char *archive, uint64 size, const char *sha256,
		  bool delta, int64 seq, bool prove, List *written)
{
	Pull	   *pull = &run->pull;
	ListCell   *lc;

	ForgetArchive(pull);
	Download(run, archive, size, sha256);
	ValidateArchive(run);
	CheckChainHeader(run, delta, seq);
	if (delta)
		PrepareDelta(run, prove);
	else
	{
		List	   *folds = FetchFolds(run);

		if (!run->full)
			MarkUnchanged(pull, written);
		/* a table a delta changes is merged, whatever its checksum */
		foreach(lc, folds)
		{
			Pull	   *d = lfirst(lc);
			int			i;
			int			j;

			for (i = 0; i < d->ntables; i++)
				for (j = 0; j < pull->ntables; j++)
					if ((d->tables[i].rows > 0 || d->tables[i].del->rows > 0 ||
						 d->tables[i].at.digest != pull->tables[j].at.digest) &&
						strcmp(d->tables[i].at.qualname, pull->tables[j].at.qualname) == 0)
					{
						pull->tables[j].unchanged = false;
						pull->tables[j].folded = true;
					}
		}
		pull->folds = folds;
	}

	/* the guard lets this pull write the machine's rows, and counts ours */
	SyncGuardBeginPull(pull->machine_id);
	SyncApplyArchive(pull);
	run->local_changed += SyncGuardEndPull();
	NoteDigests(run, pull, false);
	foreach(lc, pull->folds)
		NoteDigests(run, lfirst(lc), true);
	RemoveDownload(run);
	run->archives += 1 + list_length(pull->folds);
}

/* The delta path, run in a subtransaction: the deltas since the state here. */
static void
DeltaBody(void *arg)
{
	PullRun    *run = (PullRun *) arg;
	int			i;

	for (i = SyncDeltasAfter(&run->index, run->seq, NULL); i < run->index.ndeltas; i++)
	{
		SyncIndexDelta *d = &run->index.deltas[i];

		ApplyFile(run, d->archive, d->size, d->sha256, true, d->seq, true, NIL);
	}
}

/*
 * May the pull take the delta path: the state here is in the index's
 * chain and the copy is not known to differ (nothing written here, no
 * full pull asked)?  It does unless the full archive is the newest state
 * and smaller than the deltas: a full path that also needs the deltas
 * after its archive costs more than those deltas alone.
 */
static bool
DeltaPathAllowed(PullRun *run, List *written)
{
	const SyncIndex *index = &run->index;
	uint64		bytes;

	if (run->full || written != NIL || run->chain == NULL || index->ndeltas == 0 ||
		strcmp(run->chain, index->chain) != 0 || run->seq < index->deltas[0].seq - 1 ||
		run->seq >= index->seq)
		return false;
	(void) SyncDeltasAfter(index, run->seq, &bytes);
	return index->full_seq < index->seq || bytes < index->size;
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

/* Show what the full path downloads: the full archive and the deltas since. */
static void
ShowFullPathTotal(PullRun *run)
{
	uint64		bytes = 0;

	if (run->index.chain != NULL)
		(void) SyncDeltasAfter(&run->index, run->index.full_seq, &bytes);
	SyncProgressBytesTotal((int64) (run->index.size + bytes));
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

	/*
	 * What the pull reads (the index, the archives' tables) is reported
	 * after SPI_finish: in the call's memory, not SPI's.  (SPI_finish goes
	 * back to the context of before.)
	 */
	MemoryContextSwitchTo(run->cxt);

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

	SyncReadRemote(&machine, run->source, &run->remote);
	last_sha = (run->full || pull->verify) ? NULL : LastAppliedArchive(run);
	written = pull->verify ? NIL : SyncWrittenTables(pull->machine_id);

	/*
	 * The index is small: always fetch it and compare checksums.  (An ETag
	 * is no safe test: nginx's, for one, is the file's size and mtime in
	 * whole seconds, the same for two dumps in the same second.)
	 */
	SyncProgressBegin(pull->machine_id);
	index_text = SyncFetchIndex(&run->remote, &result, &index_len);
	run->bytes += result.bytes;
	SyncReadIndex(index_text, index_len, pull->machine_id,
				  SyncRemoteUrl(&run->remote, SYNC_INDEX_NAME), &index);
	run->index = index;
	run->archive_sha256 = MemoryContextStrdup(run->cxt, index.sha256);
	if (!pull->verify && index.chain != NULL)
		LoadChainState(run);
	if (index.chain == NULL && last_sha && written == NIL &&
		strcmp(last_sha, run->archive_sha256) == 0)
		run->status = "unchanged";
	else if (index.chain != NULL && !run->full && written == NIL &&
			 run->chain != NULL && strcmp(run->chain, index.chain) == 0 &&
			 run->seq == index.seq)
		run->status = "unchanged";
	else if (pull->verify)
	{
		/* the full archive, with the deltas since folded in */
		ShowFullPathTotal(run);
		Download(run, index.archive, index.size, index.sha256);
		ValidateArchive(run);
		CheckChainHeader(run, false, index.full_seq);
		pull->folds = FetchFolds(run);
		SyncVerifyArchive(pull);
	}
	else
	{
		bool		done = false;

		/* the delta path: only what changed since the state here */
		if (index.chain != NULL && DeltaPathAllowed(run, written))
		{
			Pull		before = *pull;
			List	   *digests = CopyDigests(run);
			ErrorData  *edata;

			uint64		bytes;

			run->path = "delta";
			(void) SyncDeltasAfter(&index, run->seq, &bytes);
			SyncProgressBytesTotal((int64) bytes);
			edata = SyncRunInSubtransaction(DeltaBody, RemoveDownload, run);
			if (edata == NULL)
				done = true;
			else if (pull->mismatch == NULL &&
					 ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION)
				ReThrowError(edata);
			else
			{
				/*
				 * The copy here is not what the delta expects, or a
				 * constraint here refuses a state on the way (two values of
				 * a unique key swapped by one delta and moved on by the
				 * next): start again on the full path, which goes to the
				 * newest state in one merge, and fails if that fails.
				 */
				(void) SyncGuardEndPull();
				run->fallback = MemoryContextStrdup(run->cxt, edata->message);
				*pull = before;
				run->digests = digests;
				run->local_changed = 0;
				run->archives = 0;
				run->unpacked_total = 0;
				run->rows_total = 0;
				SyncProgressBegin(pull->machine_id);
			}
		}

		/* the full path: the full archive, then the deltas since */
		if (!done)
		{
			run->path = "full";
			ShowFullPathTotal(run);
			ApplyFile(run, index.archive, index.size, index.sha256, false,
					  index.full_seq, false, written);
		}
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
	ListCell   *lc;

	foreach(lc, run->downloads)
	{
		if (unlink(lfirst(lc)) != 0 && errno != ENOENT)
			elog(WARNING, "could not remove downloaded archive \"%s\": %m", (char *) lfirst(lc));
	}
	run->downloads = NIL;
	run->tmp_path = NULL;
	current_download[0] = '\0';
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

/* Append to a JSON object the tables of relids, as key: a list of names. */
static void
AppendTables(StringInfo details, const char *key, List *relids)
{
	ListCell   *lc;

	if (relids == NIL)
		return;
	appendStringInfo(details, ", \"%s\": [", key);
	foreach(lc, relids)
	{
		if (lc != list_head(relids))
			appendStringInfoString(details, ", ");
		escape_json(details, SyncRelationName(lfirst_oid(lc)));
	}
	appendStringInfoChar(details, ']');
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
		if (run->path)
		{
			appendStringInfo(&details, ", \"path\": \"%s\", \"archives\": %d", run->path, run->archives);
			if (run->index.chain)
				appendStringInfo(&details, ", \"chain\": \"%s\", \"seq\": " INT64_FORMAT,
								 run->index.chain, run->index.seq);
		}
		if (run->fallback)
		{
			appendStringInfoString(&details, ", \"fallback\": ");
			escape_json(&details, run->fallback);
		}
		if (run->dry_run)
			appendStringInfoString(&details, ", \"dry_run\": true");
		AppendTables(&details, "tables", pull->only);
		AppendTables(&details, "exclude", pull->leave_out);
		if (run->source)
		{
			appendStringInfoString(&details, ", \"source\": ");
			escape_json(&details, run->source);
		}
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
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("remote must not be null")));
	run->id = by_name ? -1 : PG_GETARG_INT64(0);
	run->hostname = by_name ? text_to_cstring(PG_GETARG_TEXT_PP(0)) : NULL;
	if (!verify)
		ReadPullOptions(fcinfo, run);
	SyncLogInit(log, verify ? "verify" : "pull");

	/* sync.timeout bounds the whole pull: download, checks and merge */
	if (pull_timeout == MAX_TIMEOUTS)
		pull_timeout = RegisterTimeout(USER_TIMEOUT, PullTimeoutHandler);
	pull_timed_out = false;
	enable_timeout_after(pull_timeout, sync_timeout);
	edata = run->dry_run ? SyncRunAndUndo(PullBody, RemoveDownload, run) :
		SyncRunInSubtransaction(PullBody, RemoveDownload, run);
	disable_timeout(pull_timeout, false);
	if (run->dry_run && edata == NULL && strcmp(run->status, "unchanged") != 0)
		run->status = "dry run";
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

/*
 * The tables of a regclass[] argument: each must be registered here.  NIL
 * for NULL.
 */
static List *
TableList(FunctionCallInfo fcinfo, int argno, const char *what)
{
	ArrayType  *array;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *relids = NIL;
	int			i;

	if (PG_ARGISNULL(argno))
		return NIL;
	array = PG_GETARG_ARRAYTYPE_P(argno);
	deconstruct_array(array, REGCLASSOID, sizeof(Oid), true, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		SyncRegisteredTable reg;
		Oid			relid = nulls[i] ? InvalidOid : DatumGetObjectId(elems[i]);

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not hold a null", what)));
		SPI_connect();
		if (!SyncLookupRegistration(relid, &reg))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("table %s is not registered for sync", SyncRelationName(relid)),
					 errhint("%s names registered tables; they are listed in sync_table.", what)));
		SPI_finish();
		relids = lappend_oid(relids, relid);
	}
	return relids;
}

/*
 * sync_pull's options after remote: full, dry_run, tables, exclude and
 * source.
 */
static void
ReadPullOptions(FunctionCallInfo fcinfo, PullRun *run)
{
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("full and dry_run must not be null")));
	run->full = PG_GETARG_BOOL(1);
	run->dry_run = PG_GETARG_BOOL(2);
	run->pull.only = TableList(fcinfo, 3, "tables");
	run->pull.leave_out = TableList(fcinfo, 4, "exclude");
	if (!PG_ARGISNULL(3) && run->pull.only == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tables must name at least one table"),
				 errhint("Leave tables out (NULL) to pull every table.")));
	if (!PG_ARGISNULL(5))
	{
		/*
		 * What a source serves is taken for the machine's own publication,
		 * without the registered URL (and its TLS name) standing behind it:
		 * only a superuser may say where to read it.
		 */
		if (!superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to pull from a source"),
					 errdetail("Files read from a source stand in for the machine's own publication, whoever serves them."),
					 errhint("Only superusers may pull with source => ...; others pull from the machine's sync_url.")));
		run->source = SyncSourceUrl(text_to_cstring(PG_GETARG_TEXT_PP(5)));
	}
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
