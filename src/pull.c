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
 * then is it applied (apply.c), in the caller's transaction.
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
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "storage/ipc.h"
#include "common/file_perm.h"
#include <signal.h>
#include "mb/pg_wchar.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "archive.h"
#include "fetch.h"
#include "log.h"
#include "pull.h"
#include "sync.h"

PG_FUNCTION_INFO_V1(sync_pull_id);
PG_FUNCTION_INFO_V1(sync_pull_name);
PG_FUNCTION_INFO_V1(sync_set_remote);

/* What one call of sync_pull works with. */
typedef struct PullRun
{
	Pull		pull;
	SyncRemote	remote;
	const char *status;			/* 'applied' or 'unchanged' */
	uint64		bytes;
	char	   *tmp_path;		/* downloaded archive, while it exists */
	int			fd;
	SyncArchiveReader *reader;
	pg_cryptohash_ctx *sha;
	char	   *archive_sha256;
	MemoryContext cxt;			/* outlives SPI and the subtransaction */
	bool		by_name;		/* what sync_pull was asked for */
	int64		id;
	const char *hostname;
} PullRun;

/*
 * Show what the pull is doing in pg_stat_activity (and so in the
 * sync_progress view).
 */
void
SyncPullProgress(Pull *pull, const char *phase, const char *table,
				 int64 bytes, int64 rows)
{
	pgstat_report_activity(STATE_RUNNING,
						   psprintf("sync_pull machine=" INT64_FORMAT " phase=%s bytes=" INT64_FORMAT " rows=" INT64_FORMAT " table=%s",
									pull->machine_id, phase, bytes, rows,
									table ? table : "-"));
}

/*
 * Find the machine to pull by id or hostname; sets machine_id, range and
 * remote->url.
 */
static void
ResolveMachine(PullRun *run, bool by_name, int64 id, const char *hostname)
{
	Oid			argtypes[1];
	Datum		values[1];
	int			n;

	if (by_name)
	{
		argtypes[0] = TEXTOID;
		values[0] = CStringGetTextDatum(hostname);
		n = SyncExecute(psprintf("SELECT id, sync_start, sync_end, sync_url FROM %s WHERE hostname = $1",
								 SyncObject("sync_machine")),
						1, argtypes, values, NULL);
	}
	else
	{
		argtypes[0] = INT8OID;
		values[0] = Int64GetDatum(id);
		n = SyncExecute(psprintf("SELECT id, sync_start, sync_end, sync_url FROM %s WHERE id = $1",
								 SyncObject("sync_machine")),
						1, argtypes, values, NULL);
	}
	if (n == 0)
	{
		if (by_name)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("no machine with hostname \"%s\" is registered", hostname),
					 errhint("Registered machines are listed in sync_machine.")));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("machine " INT64_FORMAT " is not registered", id),
				 errhint("Register it with sync_register_machine(), or list the registered machines in sync_machine.")));
	}
	SyncGetInt64(0, 1, &run->pull.machine_id);
	SyncGetInt64(0, 2, &run->pull.range.start);
	SyncGetInt64(0, 3, &run->pull.range.end);
	run->remote.machine_id = run->pull.machine_id;
	run->remote.url = SyncGetText(0, 4);
	if (run->remote.url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("machine " INT64_FORMAT " has no sync_url", run->pull.machine_id),
				 errhint("Set it with sync_register_machine(" INT64_FORMAT ", NULL, 'https://...').",
						 run->pull.machine_id)));
}

/*
 * Run one statement as the owner of the extension's table relname (for
 * sync_remote, which no one else need be able to read or write).
 */
static int
ExecuteAsOwner(const char *relname, const char *sql, int nargs,
			   Oid *argtypes, Datum *values, const char *nulls)
{
	Oid			relid = get_relname_relid(relname, SyncSchemaOid());
	Oid			save_userid;
	int			save_sec_context;
	volatile int n = 0;

	int			save_nestlevel;

	/* as the owner, nothing of the caller's may take part: pin the path */
	save_nestlevel = SyncPinSettings(false);
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(SyncRelationOwner(relid),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		n = SyncExecute(sql, nargs, argtypes, values, nulls);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	AtEOXact_GUC(true, save_nestlevel);
	return n;
}

/*
 * Read the machine's connection options (CA file, credentials, proxy).
 */
static void
ReadRemoteOptions(PullRun *run)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(run->pull.machine_id)};

	if (ExecuteAsOwner("sync_remote",
					   psprintf("SELECT ca_file, username, password, proxy, url FROM %s WHERE machine_id = $1",
								SyncObject("sync_remote")),
					   1, argtypes, values, NULL) > 0)
	{
		char	   *url = SyncGetText(0, 5);

		run->remote.ca_file = SyncGetText(0, 1);
		run->remote.username = SyncGetText(0, 2);
		run->remote.password = SyncGetText(0, 3);
		run->remote.proxy = SyncGetText(0, 4);

		/*
		 * Credentials go only where they were meant to: to the URL the
		 * machine had when they were set, and only over https.
		 */
		if (run->remote.username &&
			(url == NULL || strcmp(url, run->remote.url) != 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("sync_url of machine " INT64_FORMAT " changed since its credentials were set",
							run->pull.machine_id),
					 errdetail("Credentials are sent only to the URL they were set for."),
					 errhint("Check the new URL, then set the credentials again with sync_set_remote().")));
		if (run->remote.username && pg_strncasecmp(run->remote.url, "https://", 8) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("credentials for machine " INT64_FORMAT " are sent only over https",
							run->pull.machine_id),
					 errhint("Serve the machine's dumps over https, or remove its credentials with sync_set_remote().")));
	}
}

/*
 * sync_set_remote(machine_id, ca_file, username, password, proxy)
 *
 * Set how to reach a machine: a CA file to trust for its TLS certificate,
 * HTTP basic credentials, a proxy.  NULL keeps an option as it is, an empty
 * string removes it.  Credentials are bound to the machine's sync_url at
 * this moment.  Trusting another CA means reading a server file, so the CA
 * file may be set or removed only by superusers and members of
 * pg_read_server_files.
 */
Datum
sync_set_remote(PG_FUNCTION_ARGS)
{
	int64		id;
	Oid			argtypes[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = "      ";
	char	   *url;
	int			i;

	SyncEnter(fcinfo);
	id = SyncMachineIdArg(fcinfo, 0);
	values[0] = Int64GetDatum(id);
	for (i = 1; i < 5; i++)
	{
		if (PG_ARGISNULL(i))
		{
			values[i] = (Datum) 0;
			nulls[i] = 'n';
		}
		else
			values[i] = PointerGetDatum(PG_GETARG_TEXT_PP(i));
	}
	if (nulls[1] != 'n' && !superuser() &&
		!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to change the CA file of machine " INT64_FORMAT, id),
				 errdetail("Trusting another certificate authority reads a file on the server."),
				 errhint("Only superusers and members of pg_read_server_files may set or remove ca_file.")));
	if (nulls[1] != 'n' && VARSIZE_ANY_EXHDR(DatumGetTextPP(values[1])) > 0)
	{
		char	   *path = TextDatumGetCString(values[1]);

		if (!is_absolute_path(path) || access(path, R_OK) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read CA file \"%s\": %m", path),
					 errhint("Give the absolute path of a PEM file the server can read.")));
	}

	SPI_connect();
	{
		Oid			types[1] = {INT8OID};

		if (SyncExecute(psprintf("SELECT sync_url FROM %s WHERE id = $1", SyncObject("sync_machine")),
						1, types, values, NULL) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("machine " INT64_FORMAT " is not registered", id),
					 errhint("Register it with sync_register_machine() first.")));
		url = SyncGetText(0, 1);
	}
	values[5] = url ? CStringGetTextDatum(url) : (Datum) 0;
	nulls[5] = url ? ' ' : 'n';
	ExecuteAsOwner("sync_remote",
				   psprintf("INSERT INTO %s AS r (machine_id, ca_file, username, password, proxy, url)"
							" VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), NULLIF($4, ''), NULLIF($5, ''), $6)"
							" ON CONFLICT (machine_id) DO UPDATE SET"
							"   ca_file = CASE WHEN $2 IS NULL THEN r.ca_file ELSE EXCLUDED.ca_file END,"
							"   username = CASE WHEN $3 IS NULL THEN r.username ELSE EXCLUDED.username END,"
							"   password = CASE WHEN $4 IS NULL THEN r.password ELSE EXCLUDED.password END,"
							"   proxy = CASE WHEN $5 IS NULL THEN r.proxy ELSE EXCLUDED.proxy END,"
							"   url = EXCLUDED.url, updated_at = pg_catalog.now()",
							SyncObject("sync_remote")),
				   6, argtypes, values, nulls);
	{
		Oid			types[1] = {INT8OID};

		if (ExecuteAsOwner("sync_remote",
						   psprintf("SELECT 1 FROM %s WHERE machine_id = $1 AND password IS NOT NULL AND username IS NULL",
									SyncObject("sync_remote")),
						   1, types, values, NULL) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a password needs a user name")));
		ExecuteAsOwner("sync_remote",
					   psprintf("DELETE FROM %s WHERE machine_id = $1 AND ca_file IS NULL"
								" AND username IS NULL AND password IS NULL AND proxy IS NULL",
								SyncObject("sync_remote")),
					   1, types, values, NULL);
	}
	SPI_finish();
	PG_RETURN_VOID();
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
 * Parse the index: it must be format 1, of the machine asked for, and name
 * an archive of that machine.  Sets archive name, size and checksum.
 */
static void
ParseIndex(PullRun *run, const char *index, char **name, uint64 *size,
		   char **sha256)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(index)};
	int64		format = 0;
	int64		machine = -1;
	int64		bytes = -1;
	char	   *prefix;

	PG_TRY();
	{
		SyncExecute("SELECT (j->>'format')::int8, (j->>'machine')::int8, j->>'archive',"
					"       (j->>'size')::int8, j->>'sha256'"
					"  FROM (SELECT $1::pg_catalog.jsonb AS j) i",
					1, argtypes, values, NULL);
	}
	PG_CATCH();
	{
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("index of machine " INT64_FORMAT " is not valid JSON",
						run->pull.machine_id),
				 errdetail("Fetched from %s.", SyncRemoteUrl(&run->remote, SYNC_INDEX_NAME))));
	}
	PG_END_TRY();
	SyncGetInt64(0, 1, &format);
	SyncGetInt64(0, 2, &machine);
	*name = SyncGetText(0, 3);
	SyncGetInt64(0, 4, &bytes);
	*sha256 = SyncGetText(0, 5);

	if (format != 1)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index of machine " INT64_FORMAT " has format " INT64_FORMAT ", which this version does not read",
						run->pull.machine_id, format),
				 errhint("This version of sync reads format 1; upgrade the extension here or there.")));
	if (machine != run->pull.machine_id)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is the index of machine " INT64_FORMAT ", not of machine " INT64_FORMAT,
						SyncRemoteUrl(&run->remote, SYNC_INDEX_NAME), machine,
						run->pull.machine_id),
				 errhint("Check the sync_url of machine " INT64_FORMAT ".", run->pull.machine_id)));
	prefix = psprintf("sync-" INT64_FORMAT "-", machine);
	if (*name == NULL || strncmp(*name, prefix, strlen(prefix)) != 0 ||
		strchr(*name, '/') != NULL || strstr(*name, "..") != NULL ||
		bytes < 0 || *sha256 == NULL || strlen(*sha256) != 64)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("index of machine " INT64_FORMAT " is not valid", run->pull.machine_id),
				 errdetail("It must name an archive sync-" INT64_FORMAT "-*.tar.zst with its size and SHA-256.",
						   machine)));
	*size = (uint64) bytes;
}

/* the download of this backend, removed at exit if an error did not */
static char current_download[MAXPGPATH];

static void
RemoveDownloadAtExit(int code, Datum arg)
{
	if (current_download[0])
		(void) unlink(current_download);
	current_download[0] = '\0';
}

/* the default work directory: PostgreSQL's own temporary file directory */
#define SYNC_DEFAULT_WORK_DIR "base/" PG_TEMP_FILES_DIR

/* downloads are named as PostgreSQL's temporary files, which a server
 * start removes from its temporary file directory */
#define SYNC_DOWNLOAD_PREFIX PG_TEMP_FILE_PREFIX "_sync_pull_"

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
Download(PullRun *run, const char *name, uint64 size, const char *sha256)
{
	SyncFetchResult result;
	char		got[SYNC_SHA256_HEX_LEN];

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
	run->fd = open(run->tmp_path, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY,
				   S_IRUSR | S_IWUSR);
	if (run->fd < 0)
	{
		run->tmp_path = NULL;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file in sync.work_directory: %m")));
	}

	SyncPullProgress(&run->pull, "downloading", NULL, 0, 0);
	SyncFetchArchive(&run->remote, name, run->fd, got, &result);
	run->bytes += result.bytes;
	if (close(run->fd) != 0)
	{
		run->fd = -1;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write downloaded archive \"%s\": %m", run->tmp_path)));
	}
	run->fd = -1;

	if (result.bytes != size)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("archive of machine " INT64_FORMAT " has " UINT64_FORMAT " bytes, not the " UINT64_FORMAT " its index gives",
						run->pull.machine_id, result.bytes, size),
				 errdetail("The download of %s was truncated, or the archive changed meanwhile.",
						   SyncRemoteUrl(&run->remote, name)),
				 errhint("Pull again; if it persists, check the web server of machine " INT64_FORMAT ".",
						 run->pull.machine_id)));
	if (strcmp(got, sha256) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("checksum of the archive of machine " INT64_FORMAT " does not match its index",
						run->pull.machine_id),
				 errdetail("SHA-256 of %s is %s; the index says %s.",
						   SyncRemoteUrl(&run->remote, name), got, sha256)));
	run->pull.archive_path = run->tmp_path;
}

/* Report a header or manifest that is not what this version writes. */
static void
BadDescription(Pull *pull, const char *what, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("%s of the archive of machine " INT64_FORMAT " is not valid",
					what, pull->machine_id),
			 errdetail("%s", detail)));
}

/*
 * Run a query over a JSON document of the archive ($1); a document that is
 * not valid JSON, or not of the expected shape, is reported as damage.
 * The error is caught only to be replaced by ours at once.
 */
static int
QueryJson(Pull *pull, const char *what, const char *sql, const char *text)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(text)};
	volatile int n = 0;

	PG_TRY();
	{
		n = SyncExecute(sql, 1, argtypes, values, NULL);
	}
	PG_CATCH();
	{
		FlushErrorState();
		BadDescription(pull, what, "It is not valid JSON of the expected shape.");
	}
	PG_END_TRY();
	return n;
}

/* Text of a JSON array of strings, as a C array. */
static char **
TextArray(int row, int col, int *n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	char	  **result;
	int			i;

	if (isnull)
	{
		*n = 0;
		return NULL;
	}
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	result = palloc(sizeof(char *) * (*n + 1));
	for (i = 0; i < *n; i++)
		result[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return result;
}


/* Fill a PullTable from row i of a header query. */
static void
TableFromRow(Pull *pull, PullTable *t, int row)
{
	int			i;
	int			ntypes;

	t->schema = SyncGetText(row, 1);
	t->name = SyncGetText(row, 2);
	t->key = SyncGetText(row, 3);
	t->dir = SyncGetText(row, 4);
	t->columns = TextArray(row, 5, &t->ncolumns);
	t->types = TextArray(row, 6, &ntypes);
	if (t->schema == NULL || t->name == NULL || t->key == NULL ||
		t->dir == NULL || t->ncolumns == 0 || ntypes != t->ncolumns)
		BadDescription(pull, "header", "A table lacks its name, key, directory or columns.");
	for (i = 0; i < t->ncolumns; i++)
		if (t->columns[i] == NULL || t->types[i] == NULL || t->columns[i][0] == '\0')
			BadDescription(pull, "header", "A column lacks its name or type.");
	/* "registry", or "tables/" and one plain name */
	if (strcmp(t->dir, "registry") != 0 &&
		(strncmp(t->dir, "tables/", 7) != 0 || t->dir[7] == '\0' ||
		 strchr(t->dir + 7, '/') != NULL || strstr(t->dir, "..") != NULL))
		BadDescription(pull, "header", "A table's directory is not one sync writes.");
	t->key_index = -1;
	for (i = 0; i < t->ncolumns; i++)
		if (t->columns[i] && strcmp(t->columns[i], t->key) == 0)
			t->key_index = i;
	if (t->key_index < 0)
		BadDescription(pull, "header", psprintf("The key of table %s.%s is not among its columns.",
												t->schema, t->name));
	t->qualname = quote_qualified_identifier(t->schema, t->name);
}

#define TABLE_COLUMNS_SQL \
	"e->>'schema', e->>'name', e->>'key', e->>'dir'," \
	" ARRAY(SELECT c->>'name' FROM pg_catalog.jsonb_array_elements(e->'columns') WITH ORDINALITY x(c, n) ORDER BY n)," \
	" ARRAY(SELECT c->>'type' FROM pg_catalog.jsonb_array_elements(e->'columns') WITH ORDINALITY x(c, n) ORDER BY n)"

/*
 * Read header.json: format, source machine and range, encoding, and the
 * tables with their columns.
 */
static void
ParseHeader(Pull *pull, const char *text)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(text)};
	int64		format = 0;
	int64		machine = -1;
	SyncRange	range = {0, 0};
	int			n;
	int			i;

	QueryJson(pull, "header",
			  "SELECT (j->>'format')::int8, (j#>>'{source,machine}')::int8,"
			  "       (j#>>'{source,sync_start}')::int8, (j#>>'{source,sync_end}')::int8,"
			  "       j->>'encoding'"
			  "  FROM (SELECT $1::pg_catalog.jsonb AS j) h",
			  text);
	SyncGetInt64(0, 1, &format);
	SyncGetInt64(0, 2, &machine);
	SyncGetInt64(0, 3, &range.start);
	SyncGetInt64(0, 4, &range.end);
	pull->encoding = SyncGetText(0, 5);

	if (format != 1)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("archive of machine " INT64_FORMAT " has format " INT64_FORMAT ", which this version does not read",
						pull->machine_id, format)));
	if (machine != pull->machine_id)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("archive is machine " INT64_FORMAT "'s, not machine " INT64_FORMAT "'s",
						machine, pull->machine_id),
				 errdetail("It was fetched from the sync_url of machine " INT64_FORMAT ".", pull->machine_id),
				 errhint("Check the sync_url of machine " INT64_FORMAT ".", pull->machine_id)));
	if (range.start != pull->range.start || range.end != pull->range.end)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("archive of machine " INT64_FORMAT " is for the range [" INT64_FORMAT ", " INT64_FORMAT "], but here machine " INT64_FORMAT " owns [" INT64_FORMAT ", " INT64_FORMAT "]",
						pull->machine_id, range.start, range.end, pull->machine_id,
						pull->range.start, pull->range.end),
				 errhint("The registries of the two servers disagree; correct the range with sync_register_machine() on the side that is wrong.")));
	if (pull->encoding == NULL || pg_char_to_encoding(pull->encoding) < 0)
		BadDescription(pull, "header", "It names no known encoding.");

	n = SyncExecute("SELECT " TABLE_COLUMNS_SQL
					"  FROM pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb->'tables') WITH ORDINALITY t(e, ord)"
					" ORDER BY ord",
					1, argtypes, values, NULL);
	pull->ntables = n;
	pull->tables = palloc0(sizeof(PullTable) * (n + 1));
	for (i = 0; i < n; i++)
		TableFromRow(pull, &pull->tables[i], i);
	for (i = 0; i < n; i++)
	{
		int			j;

		for (j = 0; j < i; j++)
			if (strcmp(pull->tables[i].dir, pull->tables[j].dir) == 0 ||
				strcmp(pull->tables[i].qualname, pull->tables[j].qualname) == 0)
				BadDescription(pull, "header", psprintf("It lists %s twice.", pull->tables[i].qualname));
	}

	if (SyncExecute("SELECT " TABLE_COLUMNS_SQL
					"  FROM (SELECT $1::pg_catalog.jsonb->'registry' AS e) r WHERE e IS NOT NULL",
					1, argtypes, values, NULL) != 1)
		BadDescription(pull, "header", "It describes no registry.");
	TableFromRow(pull, &pull->registry, 0);
	for (i = 0; i < n; i++)
		if (strcmp(pull->tables[i].dir, pull->registry.dir) == 0)
			BadDescription(pull, "header", "A table uses the registry's directory.");
}

/*
 * Read manifest.json: every table's row count and checksum.
 */
static void
ParseManifest(Pull *pull, const char *text)
{
	int			n;
	int			i;

	n = QueryJson(pull, "manifest",
				  "SELECT e->>'dir', (e->>'rows')::int8, e->>'sha256'"
				  "  FROM pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb->'tables') e"
				  " UNION ALL "
				  "SELECT e->>'dir', (e->>'rows')::int8, e->>'sha256'"
				  "  FROM (SELECT $1::pg_catalog.jsonb->'registry' AS e) r",
				  text);
	for (i = 0; i < n; i++)
	{
		char	   *dir = SyncGetText(i, 1);
		PullTable  *t = NULL;
		int			j;

		if (dir && strcmp(dir, pull->registry.dir) == 0)
			t = &pull->registry;
		for (j = 0; j < pull->ntables && t == NULL; j++)
			if (dir && strcmp(dir, pull->tables[j].dir) == 0)
				t = &pull->tables[j];
		if (t == NULL)
			BadDescription(pull, "manifest", "It lists a table the header does not.");
		if (!SyncGetInt64(i, 2, &t->manifest_rows))
			t->manifest_rows = -1;
		t->manifest_sha256 = SyncGetText(i, 3);
	}
}

/*
 * Checks the keys in a table's COPY text as it streams by: every row's key
 * field must be an integer in the machine's range.
 */
typedef struct KeyCheck
{
	Pull	   *pull;
	PullTable  *table;
	int			field;			/* field of the current line */
	int			linepos;		/* bytes of the current line seen */
	bool		escape;			/* the previous byte was an escaping backslash */
	char		key[32];		/* the key field so far */
	int			keylen;
	bool		keylong;
} KeyCheck;

static void
CheckKey(KeyCheck *kc)
{
	PullTable  *t = kc->table;
	char	   *end;
	int64		key;
	int			i;

	/* the registry's keys are machine ids: only counted */
	if (t == &kc->pull->registry)
	{
		t->rows++;
		return;
	}
	kc->key[kc->keylen] = '\0';
	/* digits only (an optional minus): what integer output writes */
	for (i = 0; i < kc->keylen; i++)
		if (!isdigit((unsigned char) kc->key[i]) && !(i == 0 && kc->key[i] == '-'))
			kc->keylong = true;
	errno = 0;
	key = strtoi64(kc->key, &end, 10);
	if (kc->keylong || kc->keylen == 0 || *end != '\0' || errno != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("archive of machine " INT64_FORMAT " has a row of table %s whose key \"%s\" is not an integer",
						kc->pull->machine_id, t->qualname,
						kc->keylong ? "(too long)" : kc->key)));
	if (key < kc->pull->range.start || key > kc->pull->range.end)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("archive of machine " INT64_FORMAT " has a row of table %s with key " INT64_FORMAT ", outside the machine's range [" INT64_FORMAT ", " INT64_FORMAT "]",
						kc->pull->machine_id, t->qualname, key,
						kc->pull->range.start, kc->pull->range.end),
				 errdetail("A machine may publish only rows of its own range; nothing was applied.")));
	t->rows++;
}

/*
 * Split COPY text into rows and fields exactly as COPY does for what sync
 * writes: a backslash escapes the byte after it (so an escaped tab or
 * newline is data), a tab ends a field, a newline a row.  Anything COPY
 * would read differently — a carriage return, an end-of-data marker \. —
 * is refused: the rows checked must be the rows loaded.
 */
static void
CheckKeys(KeyCheck *kc, const char *data, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = data[i];
		bool		in_key = (kc->field == kc->table->key_index);

		if (kc->escape)
		{
			if (kc->linepos == 1 && c == '.')
				BadDescription(kc->pull, "archive",
							   psprintf("The data of %s holds an end-of-data marker.", kc->table->qualname));
			kc->escape = false;
		}
		else if (c == '\\')
			kc->escape = true;
		else if (c == '\r')
			BadDescription(kc->pull, "archive",
						   psprintf("The data of %s holds a carriage return.", kc->table->qualname));
		else if (c == '\n')
		{
			CheckKey(kc);
			kc->field = 0;
			kc->linepos = 0;
			kc->keylen = 0;
			kc->keylong = false;
			continue;
		}
		else if (c == '\t')
		{
			kc->field++;
			kc->linepos++;
			continue;
		}
		/* part of a field: the key's bytes are kept, escapes included */
		if (in_key)
		{
			if (kc->keylen < (int) sizeof(kc->key) - 1)
				kc->key[kc->keylen++] = c;
			else
				kc->keylong = true;
		}
		kc->linepos++;
	}
}

/* Read a whole (small) member into memory. */
static char *
ReadSmallMember(SyncArchiveReader *reader, uint64 size, uint64 limit,
				const char *what)
{
	char	   *data;

	if (size > limit)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s of the archive is too large (" UINT64_FORMAT " bytes)", what, size)));
	data = palloc(size + 1);
	if (SyncArchiveRead(reader, data, size) != size)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s of the archive is truncated", what)));
	data[size] = '\0';
	return data;
}

/*
 * First pass over the archive, touching nothing: header, then every
 * table's files (checksum, keys in range), then the manifest, whose
 * checksums and counts must match.
 */
static void
ValidateArchive(PullRun *run)
{
	Pull	   *pull = &run->pull;
	char	   *name;
	uint64		size;
	char	   *buf = palloc(65536);
	PullTable  *current = NULL;
	pg_cryptohash_ctx *sha = NULL;
	KeyCheck	kc;
	bool		have_manifest = false;
	int			i;

	SyncPullProgress(pull, "verifying", NULL, 0, 0);
	run->reader = SyncArchiveOpen(pull->archive_path);
	if (!SyncArchiveNext(run->reader, &name, &size) || strcmp(name, "header.json") != 0)
		BadDescription(pull, "archive", "It does not start with header.json.");
	ParseHeader(pull, ReadSmallMember(run->reader, size, 64 * 1024 * 1024, "header"));

	while (SyncArchiveNext(run->reader, &name, &size))
	{
		PullTable  *t = NULL;
		size_t		n;

		if (have_manifest)
			BadDescription(pull, "archive", "Something follows the manifest.");
		if (strcmp(name, "manifest.json") == 0)
		{
			ParseManifest(pull, ReadSmallMember(run->reader, size, 256 * 1024 * 1024, "manifest"));
			have_manifest = true;
			continue;
		}
		if (strncmp(name, pull->registry.dir, strlen(pull->registry.dir)) == 0 &&
			name[strlen(pull->registry.dir)] == '/')
			t = &pull->registry;
		for (i = 0; i < pull->ntables && t == NULL; i++)
		{
			const char *dir = pull->tables[i].dir;

			if (strncmp(name, dir, strlen(dir)) == 0 && name[strlen(dir)] == '/')
				t = &pull->tables[i];
		}
		if (t == NULL)
			BadDescription(pull, "archive", psprintf("It holds \"%s\", which its header does not describe.", name));

		if (t != current)
		{
			if (t->seen)
				BadDescription(pull, "archive", psprintf("The files of %s are not together.", t->qualname));
			if (current)
				SyncSha256Finish(sha, current->sha256);
			sha = NULL;
			current = t;
			t->seen = true;
			sha = SyncSha256Begin();
			memset(&kc, 0, sizeof(kc));
			kc.pull = pull;
			kc.table = t;
			SyncPullProgress(pull, "verifying", t->qualname, 0, 0);
		}
		while ((n = SyncArchiveRead(run->reader, buf, 65536)) > 0)
		{
			if (pg_cryptohash_update(sha, (uint8 *) buf, n) < 0)
				elog(ERROR, "could not update SHA-256 digest");
			CheckKeys(&kc, buf, n);
		}
		if (kc.field != 0 || kc.linepos != 0 || kc.escape)
			BadDescription(pull, "archive", psprintf("A file of %s ends inside a row.", t->qualname));
	}
	if (current)
		SyncSha256Finish(sha, current->sha256);
	SyncArchiveClose(run->reader);
	run->reader = NULL;

	if (!have_manifest)
		BadDescription(pull, "archive", "It has no manifest.");
	for (i = -1; i < pull->ntables; i++)
	{
		PullTable  *t = (i < 0) ? &pull->registry : &pull->tables[i];

		if (!t->seen)
		{
			/* an empty table has an empty file; so this is damage */
			BadDescription(pull, "archive", psprintf("The files of %s are missing.", t->qualname));
		}
		if (t->manifest_sha256 == NULL || strcmp(t->manifest_sha256, t->sha256) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("checksum of table %s in the archive of machine " INT64_FORMAT " does not match its manifest",
							t->qualname, pull->machine_id),
					 errdetail("SHA-256 of its rows is %s; the manifest says %s.",
							   t->sha256, t->manifest_sha256 ? t->manifest_sha256 : "nothing")));
		if (t->manifest_rows != t->rows)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("table %s in the archive of machine " INT64_FORMAT " has " INT64_FORMAT " rows, not the " INT64_FORMAT " its manifest gives",
							t->qualname, pull->machine_id, t->rows, t->manifest_rows)));
	}
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
		escape_json(&shas, pull->tables[i].qualname);
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
 * rows need not be read again.
 */
static void
MarkUnchanged(Pull *pull)
{
	Datum		values[1] = {Int64GetDatum(pull->machine_id)};
	int			i;

	for (i = 0; i < pull->ntables; i++)
	{
		Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
		Datum		vals[3];

		vals[0] = values[0];
		vals[1] = CStringGetTextDatum(pull->tables[i].qualname);
		vals[2] = CStringGetTextDatum(pull->tables[i].sha256);
		if (SyncExecute(psprintf("SELECT 1 FROM %s WHERE machine_id = $1 AND table_sha256->>$2 = $3",
								 SyncObject("sync_pull_state")),
						3, types, vals, NULL) > 0)
			pull->tables[i].unchanged = true;
	}
}

/*
 * The pull itself, inside the caller's subtransaction.
 */
static void
RunPull(PullRun *run, bool by_name, int64 id, const char *hostname)
{
	Pull	   *pull = &run->pull;
	int64		local_id;
	SyncRange	local_range;
	char	   *last_sha;
	char	   *index;
	char	   *archive_name;
	uint64		archive_size;
	SyncFetchResult result;
	int			save_nestlevel;

	/* names resolve to built-ins; COPY text is read as it was written */
	save_nestlevel = SyncPinSettings(false);
	SPI_connect();

	if (!SyncLocalMachine(&local_id, &local_range))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this server has no sync identity"),
				 errhint("Say which registered machine this server is with sync_init().")));
	ResolveMachine(run, by_name, id, hostname);
	if (pull->machine_id == local_id)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("machine " INT64_FORMAT " is this server", local_id),
				 errdetail("A server publishes its own rows; it pulls only other machines'.")));

	/* one pull of a machine at a time; pulls of different machines run at once */
	{
		Oid			argtypes[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(pull->machine_id)};

		SyncExecute("SELECT pg_catalog.pg_advisory_xact_lock(1937337956, pg_catalog.hashint8($1))",
					1, argtypes, values, NULL);
	}

	ReadRemoteOptions(run);
	last_sha = LastAppliedArchive(run);

	/*
	 * The index is small: always fetch it and compare checksums.  (An ETag
	 * is no safe test: nginx's, for one, is the file's size and mtime in
	 * whole seconds, the same for two dumps in the same second.)
	 */
	SyncPullProgress(pull, "checking", NULL, 0, 0);
	index = SyncFetchIndex(&run->remote, &result);
	run->bytes += result.bytes;
	ParseIndex(run, index, &archive_name, &archive_size, &run->archive_sha256);
	run->archive_sha256 = MemoryContextStrdup(run->cxt, run->archive_sha256);
	if (last_sha && strcmp(last_sha, run->archive_sha256) == 0)
	{
		run->status = "unchanged";
		SPI_finish();
		AtEOXact_GUC(true, save_nestlevel);
		return;
	}

	Download(run, archive_name, archive_size, run->archive_sha256);
	ValidateArchive(run);
	MarkUnchanged(pull);
	SyncApplyArchive(pull);
	SavePullState(run);
	run->status = "applied";
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
}

/*
 * Release what a pull holds outside PostgreSQL's resource tracking.
 */
static void
ReleasePull(PullRun *run)
{
	SyncArchiveClose(run->reader);
	run->reader = NULL;
	if (run->fd >= 0)
	{
		close(run->fd);
		run->fd = -1;
	}
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
	PullRun    *run = (PullRun *) arg;

	RunPull(run, run->by_name, run->id, run->hostname);
	ReleasePull(run);
}

static void
PullCleanup(void *arg)
{
	ReleasePull((PullRun *) arg);
}

/*
 * Common body of sync_pull(bigint) and sync_pull(text).
 */
static Datum
DoPull(FunctionCallInfo fcinfo, bool by_name)
{
	PullRun    *run = palloc0(sizeof(PullRun));
	SyncLogEntry *log = palloc(sizeof(SyncLogEntry));
	ErrorData  *edata;
	int64		id = by_name ? -1 : PG_GETARG_INT64(0);
	char	   *hostname = by_name ? text_to_cstring(PG_GETARG_TEXT_PP(0)) : NULL;
	TupleDesc	desc;
	Datum		values[8];
	bool		nulls[8] = {false};
	Interval   *duration;
	StringInfoData details;
	ListCell   *lc;

	SyncEnter(fcinfo);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	run->fd = -1;
	run->pull.machine_id = -1;
	run->cxt = run->pull.cxt = CurrentMemoryContext;
	run->pull.session_path = pstrdup(GetConfigOption("search_path", false, false));
	SyncLogInit(log, "pull");

	run->by_name = by_name;
	run->id = id;
	run->hostname = hostname;
	edata = SyncRunInSubtransaction(PullBody, PullCleanup, run);
	if (edata)
	{
		pgstat_report_activity(STATE_RUNNING, debug_query_string);
		log->machine_id = run->pull.machine_id;
		log->finished_at = GetCurrentTimestamp();
		/* a scheduled run past its timeout was cancelled */
		log->status = (sync_current_job > 0 && edata->sqlerrcode == ERRCODE_QUERY_CANCELED) ?
			"timeout" : "failed";
		log->bytes = (int64) run->bytes;
		log->message = edata->message;
		SyncLogWrite(log);
		ReThrowError(edata);
	}
	pgstat_report_activity(STATE_RUNNING, debug_query_string);

	log->machine_id = run->pull.machine_id;
	log->finished_at = GetCurrentTimestamp();
	log->status = run->status;
	log->tables = run->pull.ntables;
	log->inserted = run->pull.inserted;
	log->updated = run->pull.updated;
	log->deleted = run->pull.deleted;
	log->bytes = (int64) run->bytes;
	initStringInfo(&details);
	appendStringInfoString(&details, "{\"warnings\": [");
	foreach(lc, run->pull.warnings)
	{
		if (lc != list_head(run->pull.warnings))
			appendStringInfoString(&details, ", ");
		escape_json(&details, lfirst(lc));
	}
	appendStringInfoString(&details, "]");
	if (run->archive_sha256)
		appendStringInfo(&details, ", \"sha256\": \"%s\"", run->archive_sha256);
	appendStringInfoChar(&details, '}');
	log->details = details.data;
	log->message = run->pull.warnings ? psprintf("%d warning(s)", list_length(run->pull.warnings)) : NULL;
	SyncLogWrite(log);

	duration = palloc0(sizeof(Interval));
	duration->time = log->finished_at - log->started_at;
	values[0] = Int64GetDatum(run->pull.machine_id);
	values[1] = CStringGetTextDatum(run->status);
	values[2] = Int32GetDatum(run->pull.ntables);
	values[3] = Int64GetDatum(run->pull.inserted);
	values[4] = Int64GetDatum(run->pull.updated);
	values[5] = Int64GetDatum(run->pull.deleted);
	values[6] = Int64GetDatum((int64) run->bytes);
	values[7] = IntervalPGetDatum(duration);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}

/*
 * sync_pull(remote bigint) returns (machine_id, status, tables, inserted,
 * updated, deleted, bytes, duration)
 */
Datum
sync_pull_id(PG_FUNCTION_ARGS)
{
	return DoPull(fcinfo, false);
}

/*
 * sync_pull(remote text): the same, by hostname.
 */
Datum
sync_pull_name(PG_FUNCTION_ARGS)
{
	return DoPull(fcinfo, true);
}
