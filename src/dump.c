/*-------------------------------------------------------------------------
 *
 * dump.c
 *		sync_dump(level, anonymize, unchecked): publish this server's own
 *		rows as one archive in sync.dump_directory.
 *
 * All queries of a dump see one snapshot, so the archive is consistent
 * across tables while other sessions go on writing.  Rows stream from the
 * executor straight into COPY text, which goes into the archive in chunks
 * of bounded size: memory stays flat whatever the table size.
 *
 * The archive (sync-<machine>-<time>.tar.zst) holds, as tar members:
 *	  header.json				what follows: source, tables, columns, keys
 *	  registry/000001.copy		the machine registry
 *	  tables/NNNN-<name>/NNNNNN.copy each table's rows, COPY text format
 *	  manifest.json				the header plus files, counts and checksums
 * and sync-index.json beside it names the newest archive, its size and its
 * SHA-256, for subscribers to poll.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "pgtime.h"
#include "storage/fd.h"
#include "tcop/dest.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "archive.h"
#include "dump.h"
#include "log.h"
#include "sync.h"

PG_FUNCTION_INFO_V1(sync_dump);

/* archive format version, in the manifest and the index */
#define SYNC_FORMAT_VERSION 1

/* size at which a table's COPY text is cut into the next archive member */
#define SYNC_CHUNK_SIZE (8 * 1024 * 1024)

/* zstd level: fast, with a ratio close to gzip's (see doc/dump.md) */
#define SYNC_ZSTD_LEVEL 1

/* how many archives stay in the dump directory */
#define SYNC_ARCHIVES_KEPT 2

/* Everything one dump works with. */
typedef struct DumpState
{
	int			level;
	bool		anonymize;
	bool		unchecked;
	int64		machine_id;
	bool		has_machine;	/* machine_id is known */
	char	   *hostname;
	SyncRange	range;
	TimestampTz snapshot_time;
	const char *dir;
	char	   *archive_name;
	char	   *archive_path;

	DumpTable  *tables;
	int			ntables;
	DumpTable	registry;

	/* resources to release if the dump fails */
	SyncArchive *archive;
	pg_cryptohash_ctx *table_sha;
	bool		archive_published;	/* renamed into place */
	bool		index_written;	/* the index names it */

	/* results */
	int64		rows;
	int64		excluded;
	uint64		bytes;
	char		sha256[SYNC_SHA256_HEX_LEN];
} DumpState;

/* Receives a table's rows from the executor and writes them as COPY text. */
typedef struct CopyReceiver
{
	DestReceiver pub;
	DumpState  *state;
	DumpTable  *table;
	FmgrInfo   *out;			/* output function per column */
	MemoryContext cxt;			/* for what outlives the query: file names */
	MemoryContext rowcxt;		/* reset after every row */
	StringInfoData chunk;		/* COPY text not yet in the archive */
} CopyReceiver;

/*
 * A timestamp in UTC, as 2026-11-23T18:00:00.123456Z or, compact (for file
 * names), as 20261123T180000123456Z.
 */
static char *
FormatUtc(TimestampTz ts, bool compact)
{
	pg_time_t	t = timestamptz_to_time_t(ts);
	int			usec = (int) (ts % USECS_PER_SEC);
	char		buf[64];

	if (usec < 0)
		usec += USECS_PER_SEC;
	pg_strftime(buf, sizeof(buf), compact ? "%Y%m%dT%H%M%S" : "%Y-%m-%dT%H:%M:%S",
				pg_gmtime(&t));
	return psprintf(compact ? "%s%06dZ" : "%s.%06dZ", buf, usec);
}

/*
 * The dump directory must be set, exist and be writable.
 */
static const char *
CheckDumpDirectory(void)
{
	struct stat st;
	const char *dir = sync_dump_directory;

	if (dir == NULL || dir[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sync.dump_directory is not set"),
				 errhint("Set it to the directory your web server publishes at this machine's sync_url, e.g. ALTER SYSTEM SET sync.dump_directory = '/var/lib/postgresql/sync'; SELECT pg_reload_conf();")));
	if (stat(dir, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not access dump directory \"%s\": %m", dir),
				 errhint("Create the directory, or set sync.dump_directory to one that exists.")));
	if (!S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("dump directory \"%s\" is not a directory", dir)));
	if (access(dir, W_OK | X_OK) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("dump directory \"%s\" is not writable: %m", dir),
				 errhint("Make it writable by the operating system user the server runs as.")));
	return dir;
}

/*
 * Name of a table's directory in the archive: its position and its name,
 * reduced to characters that are safe in any file system.
 */
static char *
TableDirectory(int position, const char *schema, const char *name)
{
	char	   *qual = psprintf("%s.%s", schema, name);
	char	   *p;

	if (strlen(qual) > 60)
		qual[60] = '\0';
	for (p = qual; *p; p++)
		if (!isalnum((unsigned char) *p) && *p != '_' && *p != '.' && *p != '-')
			*p = '_';
	return psprintf("tables/%04d-%s", position, qual);
}

/*
 * Describe one registered table for the dump: its published columns (with
 * anonymize rules applied when asked), and the condition that says which
 * local rows are published (level and filter).  The expressions are
 * validated again: the table may have changed since it was registered.
 */
static void
PrepareTable(DumpState *state, DumpTable *t, Oid relid,
			 const char *level_column, const char *filter, Jsonb *anonymize)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	key_attnum = SyncKeyColumn(rel);
	List	   *rules = NIL;
	StringInfoData select;
	StringInfoData keep;
	int			i;

	t->relid = relid;
	t->schema = get_namespace_name(RelationGetNamespace(rel));
	t->name = pstrdup(RelationGetRelationName(rel));
	t->qualname = SyncRelationName(relid);
	/* rows of tables inheriting from it are theirs, not its */
	t->from = (rel->rd_rel->relkind == RELKIND_RELATION) ?
		psprintf("ONLY %s", t->qualname) : t->qualname;
	t->key_name = pstrdup(NameStr(TupleDescAttr(desc, key_attnum - 1)->attname));
	t->key = pstrdup(quote_identifier(t->key_name));

	if (anonymize != NULL)
	{
		rules = SyncAnonymizeSql(rel, key_attnum, anonymize, "t");
		if (!state->anonymize && rules != NIL)
			ereport(WARNING,
					(errmsg("dump of table %s includes the real values of its anonymized columns",
							t->qualname),
					 errdetail("sync_dump was called with anonymize => false, so %d column(s) with anonymize rules, among them \"%s\", are published unchanged.",
							   list_length(rules),
							   ((SyncAnonymizedColumn *) linitial(rules))->column),
					 errhint("Publish with anonymize => true unless every subscriber may see these values.")));
	}

	initStringInfo(&select);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		DumpColumn *col;
		const char *value = NULL;
		ListCell   *lc;

		/* generated columns are computed by the subscriber */
		if (att->attisdropped || att->attgenerated)
			continue;
		col = palloc0(sizeof(DumpColumn));
		col->name = pstrdup(NameStr(att->attname));
		col->type = format_type_with_typemod(att->atttypid, att->atttypmod);
		if (state->anonymize)
		{
			foreach(lc, rules)
			{
				SyncAnonymizedColumn *rule = lfirst(lc);

				if (strcmp(rule->column, col->name) == 0)
					value = rule->sql;
			}
		}
		col->anonymized = (value != NULL);
		appendStringInfo(&select, "%s%s", select.len ? ", " : "",
						 value ? value : psprintf("t.%s", quote_identifier(col->name)));
		t->columns = lappend(t->columns, col);
	}
	t->select_sql = select.data;

	initStringInfo(&keep);
	if (level_column != NULL)
		appendStringInfo(&keep, "t.%s >= $3", quote_identifier(level_column));
	if (filter != NULL && !state->unchecked)
		appendStringInfo(&keep, "%s(%s)", keep.len ? " AND " : "",
						 SyncFilterSql(rel, filter, "t"));
	t->keep_sql = keep.len ? psprintf("coalesce(%s, false)", keep.data) : "true";

	table_close(rel, NoLock);
}

/* bytes that COPY text escapes (and the terminating NUL) */
static const bool copy_special[256] = {
	[0] = true, ['\b'] = true, ['\f'] = true, ['\n'] = true, ['\r'] = true,
	['\t'] = true, ['\v'] = true, ['\\'] = true,
};

/*
 * Append a value in COPY text format: backslash and control characters
 * escaped as COPY does, everything else as is, in runs.
 */
static void
AppendCopyText(StringInfo buf, const char *s)
{
	const char *start = s;

	for (;;)
	{
		const char *esc;

		while (!copy_special[(unsigned char) *s])
			s++;
		switch (*s)
		{
			case '\0':
				appendBinaryStringInfo(buf, start, s - start);
				return;
			case '\\':
				esc = "\\\\";
				break;
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '\v':
				esc = "\\v";
				break;
			default:
				pg_unreachable();
		}
		appendBinaryStringInfo(buf, start, s - start);
		appendBinaryStringInfo(buf, esc, 2);
		start = ++s;
	}
}

/*
 * Put the buffered COPY text into the archive as the table's next member
 * (also when empty, if force: every table has at least one file).
 */
static void
FlushChunk(CopyReceiver *r, bool force)
{
	DumpTable  *t = r->table;
	MemoryContext oldcxt;
	char	   *name;

	if (r->chunk.len == 0 && !force)
		return;

	/* called from inside the executor too, whose memory dies with the query */
	oldcxt = MemoryContextSwitchTo(r->cxt);
	name = psprintf("%s/%06d.copy", t->dir, list_length(t->files) + 1);
	if (pg_cryptohash_update(r->state->table_sha, (uint8 *) r->chunk.data,
							 r->chunk.len) < 0)
		elog(ERROR, "could not update SHA-256 digest");
	t->files = lappend(t->files, name);
	MemoryContextSwitchTo(oldcxt);
	SyncArchiveAddMember(r->state->archive, name, r->chunk.data, r->chunk.len);
	resetStringInfo(&r->chunk);
}

/* DestReceiver startup: look up the output function of every column. */
static void
CopyStartup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	CopyReceiver *r = (CopyReceiver *) self;
	int			i;

	r->out = palloc(sizeof(FmgrInfo) * typeinfo->natts);
	for (i = 0; i < typeinfo->natts; i++)
	{
		Oid			func;
		bool		isvarlena;

		getTypeOutputInfo(TupleDescAttr(typeinfo, i)->atttypid, &func, &isvarlena);
		fmgr_info(func, &r->out[i]);
	}
}

/*
 * DestReceiver: one row.  Column 1 says whether the row is published; the
 * others are the published values.
 */
static bool
CopyReceive(TupleTableSlot *slot, DestReceiver *self)
{
	CopyReceiver *r = (CopyReceiver *) self;
	MemoryContext oldcxt;
	int			natts = slot->tts_tupleDescriptor->natts;
	int			i;

	slot_getallattrs(slot);
	if (slot->tts_isnull[0] || !DatumGetBool(slot->tts_values[0]))
	{
		r->table->excluded++;
		return true;
	}

	oldcxt = MemoryContextSwitchTo(r->rowcxt);
	for (i = 1; i < natts; i++)
	{
		if (i > 1)
			appendStringInfoCharMacro(&r->chunk, '\t');
		if (slot->tts_isnull[i])
			appendBinaryStringInfo(&r->chunk, "\\N", 2);
		else
			AppendCopyText(&r->chunk,
						   OutputFunctionCall(&r->out[i], slot->tts_values[i]));
	}
	appendStringInfoCharMacro(&r->chunk, '\n');
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(r->rowcxt);

	r->table->rows++;
	if (r->chunk.len >= SYNC_CHUNK_SIZE)
		FlushChunk(r, false);
	return true;
}

static void
CopyShutdown(DestReceiver *self)
{
}

static void
CopyDestroy(DestReceiver *self)
{
}

/*
 * Write one table's published rows into the archive, counting what its keep
 * condition leaves out.  Rows come in physical order, which changes only
 * when rows do (or the table is rewritten): an unchanged table gives the
 * same bytes and checksum, so subscribers skip it, without the cost of
 * sorting by key.
 */
static void
ExportTable(DumpState *state, DumpTable *t, const SyncRange *range,
			Snapshot snapshot)
{
	CopyReceiver r;
	SPIPlanPtr	plan;
	ParamListInfo params;
	SPIExecuteOptions options;
	Oid			argtypes[3] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3];
	char	   *sql;
	int			rc;
	int			i;

	sql = psprintf("SELECT %s%s, %s FROM %s t%s"
				   " WHERE t.%s BETWEEN $1 AND $2",
				   t->keep_sql,
				   t->ex_rows > 0 ? " AND e.key IS NULL" : "",
				   t->select_sql, t->from,
				   t->ex_rows > 0 ? psprintf(" LEFT JOIN %s e ON e.key = t.%s",
											 t->ex_table, t->key) : "",
				   t->key);

	values[0] = Int64GetDatum(range->start);
	values[1] = Int64GetDatum(range->end);
	values[2] = Int32GetDatum(state->level);
	params = makeParamList(3);
	for (i = 0; i < 3; i++)
	{
		params->params[i].value = values[i];
		params->params[i].isnull = false;
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = argtypes[i];
	}
	params->numParams = 3;

	plan = SPI_prepare(sql, 3, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s: %s",
			 SPI_result_code_string(SPI_result), sql);

	memset(&r, 0, sizeof(r));
	r.pub.receiveSlot = CopyReceive;
	r.pub.rStartup = CopyStartup;
	r.pub.rShutdown = CopyShutdown;
	r.pub.rDestroy = CopyDestroy;
	r.pub.mydest = DestNone;
	r.state = state;
	r.table = t;
	r.cxt = CurrentMemoryContext;
	r.rowcxt = AllocSetContextCreate(CurrentMemoryContext, "sync_dump row",
									 ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&r.chunk);
	enlargeStringInfo(&r.chunk, SYNC_CHUNK_SIZE);

	state->table_sha = SyncSha256Begin();

	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = true;
	options.dest = &r.pub;

	/* the dump's snapshot, seeing what the closure wrote */
	PushCopiedSnapshot(snapshot);
	UpdateActiveSnapshotCommandId();
	rc = SPI_execute_plan_extended(plan, &options);
	PopActiveSnapshot();
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan_extended failed: %s: %s",
			 SPI_result_code_string(rc), sql);
	SPI_freeplan(plan);

	FlushChunk(&r, t->files == NIL);
	SyncSha256Finish(state->table_sha, t->sha256);
	state->table_sha = NULL;

	pfree(r.chunk.data);
	MemoryContextDelete(r.rowcxt);
	state->rows += t->rows;
	state->excluded += t->excluded;
}

/* Append a JSON string value. */
static void
JsonString(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

/*
 * Append the manifest entry of one table; with results, also its files,
 * counts and checksum (the header, written first, has no results yet).
 */
static void
ManifestTable(StringInfo buf, DumpTable *t, bool results)
{
	ListCell   *lc;
	bool		first = true;

	appendStringInfoString(buf, "{\"schema\": ");
	JsonString(buf, t->schema);
	appendStringInfoString(buf, ", \"name\": ");
	JsonString(buf, t->name);
	appendStringInfoString(buf, ", \"key\": ");
	JsonString(buf, t->key_name);
	appendStringInfoString(buf, ", \"columns\": [");
	foreach(lc, t->columns)
	{
		DumpColumn *col = lfirst(lc);

		appendStringInfo(buf, "%s{\"name\": ", first ? "" : ", ");
		JsonString(buf, col->name);
		appendStringInfoString(buf, ", \"type\": ");
		JsonString(buf, col->type);
		if (col->anonymized)
			appendStringInfoString(buf, ", \"anonymized\": true");
		appendStringInfoChar(buf, '}');
		first = false;
	}
	appendStringInfo(buf, "], \"dir\": ");
	JsonString(buf, t->dir);
	if (!results)
	{
		appendStringInfoChar(buf, '}');
		return;
	}
	appendStringInfoString(buf, ", \"files\": [");
	first = true;
	foreach(lc, t->files)
	{
		appendStringInfoString(buf, first ? "" : ", ");
		JsonString(buf, lfirst(lc));
		first = false;
	}
	appendStringInfo(buf, "], \"rows\": " INT64_FORMAT ", \"excluded\": " INT64_FORMAT
					 ", \"sha256\": \"%s\"}",
					 t->rows, t->excluded, t->sha256);
}

/*
 * The manifest: what the archive holds, where from, and (with results) the
 * files, counts and checksum of every table's COPY text.
 */
static char *
BuildManifest(DumpState *state, bool results)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\n  \"format\": %d,\n  \"extension_version\": ",
					 SYNC_FORMAT_VERSION);
	JsonString(&buf, SYNC_EXTENSION_VERSION);
	appendStringInfo(&buf, ",\n  \"server_version_num\": %d", PG_VERSION_NUM);
	appendStringInfoString(&buf, ",\n  \"encoding\": ");
	JsonString(&buf, GetDatabaseEncodingName());
	appendStringInfo(&buf, ",\n  \"source\": {\"machine\": " INT64_FORMAT ", \"hostname\": ",
					 state->machine_id);
	JsonString(&buf, state->hostname);
	appendStringInfo(&buf, ", \"sync_start\": " INT64_FORMAT ", \"sync_end\": " INT64_FORMAT "}",
					 state->range.start, state->range.end);
	appendStringInfo(&buf, ",\n  \"level\": %d,\n  \"anonymized\": %s,\n  \"unchecked\": %s",
					 state->level, state->anonymize ? "true" : "false",
					 state->unchecked ? "true" : "false");
	appendStringInfoString(&buf, ",\n  \"snapshot_time\": ");
	JsonString(&buf, FormatUtc(state->snapshot_time, false));
	appendStringInfoString(&buf, ",\n  \"registry\": ");
	ManifestTable(&buf, &state->registry, results);
	appendStringInfoString(&buf, ",\n  \"tables\": [");
	for (i = 0; i < state->ntables; i++)
	{
		appendStringInfoString(&buf, i ? ",\n    " : "\n    ");
		ManifestTable(&buf, &state->tables[i], results);
	}
	appendStringInfoString(&buf, "\n  ]\n}\n");
	return buf.data;
}

/*
 * Start of the names of this database's temporary files: the cluster's
 * system identifier and the database, so that dumps of other databases or
 * other clusters sharing the directory are never mistaken for ours.
 */
static char *
TempPrefix(void)
{
	return psprintf(".sync-" UINT64_FORMAT "-%u", GetSystemIdentifier(),
					MyDatabaseId);
}

/*
 * Remove temporary files that an earlier dump of this database left when
 * its server crashed.  Dumps are serialized, so none is in use.
 */
static void
RemoveStaleTemporaryFiles(const char *dir)
{
	char	   *prefix = psprintf("%s-", TempPrefix());
	DIR		   *d = AllocateDir(dir);
	struct dirent *de;

	while ((de = ReadDir(d, dir)) != NULL)
	{
		size_t		len = strlen(de->d_name);

		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
			len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0)
		{
			char	   *path = psprintf("%s/%s", dir, de->d_name);

			if (unlink(path) != 0 && errno != ENOENT)
				ereport(WARNING,
						(errcode_for_file_access(),
						 errmsg("could not remove stale temporary file \"%s\": %m", path)));
		}
	}
	FreeDir(d);
}

/*
 * The archive the current index names, or NULL.
 */
static char *
IndexedArchive(DumpState *state)
{
	char	   *path = psprintf("%s/%s", state->dir, SYNC_INDEX_NAME);
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	char	   *text;
	FILE	   *f = AllocateFile(path, "r");
	char		buf[4096];
	size_t		n;

	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	FreeFile(f);
	buf[n] = '\0';
	text = buf;
	values[0] = CStringGetTextDatum(text);
	PG_TRY();
	{
		SyncExecute("SELECT $1::pg_catalog.jsonb->>'archive'", 1, argtypes, values, NULL);
	}
	PG_CATCH();
	{
		/* an index we cannot read names nothing worth keeping */
		FlushErrorState();
		return NULL;
	}
	PG_END_TRY();
	return SyncGetText(0, 1);
}

/*
 * Remove this machine's archives except the new one and the one the
 * previous index named (a subscriber may still be fetching it).  Archives
 * are told apart by name, never by their times: a clock that went back
 * changes nothing.
 */
static void
PruneOldArchives(DumpState *state, const char *previous)
{
	char	   *prefix = psprintf("sync-" INT64_FORMAT "-", state->machine_id);
	DIR		   *d = AllocateDir(state->dir);
	struct dirent *de;
	List	   *doomed = NIL;
	ListCell   *lc;

	while ((de = ReadDir(d, state->dir)) != NULL)
	{
		size_t		len = strlen(de->d_name);

		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
			len > 8 && strcmp(de->d_name + len - 8, ".tar.zst") == 0 &&
			strcmp(de->d_name, state->archive_name) != 0 &&
			(previous == NULL || strcmp(de->d_name, previous) != 0))
			doomed = lappend(doomed, pstrdup(de->d_name));
	}
	FreeDir(d);

	foreach(lc, doomed)
	{
		char	   *path = psprintf("%s/%s", state->dir, (char *) lfirst(lc));

		if (unlink(path) != 0 && errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not remove old dump archive \"%s\": %m", path)));
	}
}

/*
 * Write sync-index.json, which names the newest archive.
 */
static void
WriteIndex(DumpState *state)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"format\": %d, \"machine\": " INT64_FORMAT ", \"archive\": ",
					 SYNC_FORMAT_VERSION, state->machine_id);
	JsonString(&buf, state->archive_name);
	appendStringInfo(&buf, ", \"size\": " UINT64_FORMAT ", \"sha256\": \"%s\", \"created_at\": ",
					 state->bytes, state->sha256);
	JsonString(&buf, FormatUtc(state->snapshot_time, false));
	appendStringInfo(&buf, ", \"level\": %d, \"anonymized\": %s, \"unchecked\": %s}\n",
					 state->level, state->anonymize ? "true" : "false",
					 state->unchecked ? "true" : "false");
	SyncWriteFileDurably(psprintf("%s/%s-%d-index.tmp", state->dir,
								  TempPrefix(), MyProcPid),
						 psprintf("%s/%s", state->dir, SYNC_INDEX_NAME),
						 buf.data, buf.len);
}

/*
 * Read the registered tables and describe each for the dump.
 */
static void
PrepareTables(DumpState *state)
{
	int			n;
	int			i;
	Oid		   *relids;
	char	  **levels;
	char	  **filters;
	Jsonb	  **rules;

	n = SyncExecute(psprintf("SELECT tbl, level_column::text, filter, anonymize"
							 "  FROM %s ORDER BY tbl::text",
							 SyncObject("sync_table")),
					0, NULL, NULL, NULL);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no tables are registered for sync"),
				 errhint("Register the tables to publish with sync_add_table().")));

	/* copy out of SPI's result before running more queries */
	relids = palloc(sizeof(Oid) * n);
	levels = palloc(sizeof(char *) * n);
	filters = palloc(sizeof(char *) * n);
	rules = palloc(sizeof(Jsonb *) * n);
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d;

		relids[i] = SyncGetOid(i, 1);
		levels[i] = SyncGetText(i, 2);
		filters[i] = SyncGetText(i, 3);
		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull);
		rules[i] = isnull ? NULL : DatumGetJsonbPCopy(d);
	}

	state->ntables = n;
	state->tables = palloc0(sizeof(DumpTable) * n);
	for (i = 0; i < n; i++)
		PrepareTable(state, &state->tables[i], relids[i], levels[i],
					 filters[i], rules[i]);

	/* parents first, so that subscribers can apply in archive order */
	SyncSortTablesByReferences(state->tables, n);
	for (i = 0; i < n; i++)
		state->tables[i].dir = TableDirectory(i + 1, state->tables[i].schema,
											  state->tables[i].name);
}

/*
 * Describe the registry (sync_machine) as a table of the dump: all of its
 * rows, so subscribers learn every machine, range and URL.
 */
static void
PrepareRegistry(DumpState *state)
{
	static const char *const columns[][2] = {
		{"id", "bigint"}, {"hostname", "text"}, {"sync_url", "text"},
		{"sync_contact", "text"}, {"sync_start", "bigint"}, {"sync_end", "bigint"}
	};
	DumpTable  *t = &state->registry;
	StringInfoData select;
	int			i;

	memset(t, 0, sizeof(*t));
	t->relid = get_relname_relid("sync_machine", SyncSchemaOid());
	t->schema = get_namespace_name(SyncSchemaOid());
	t->name = "sync_machine";
	t->qualname = t->from = SyncObject("sync_machine");
	t->key = t->key_name = "id";
	t->keep_sql = "true";
	t->dir = "registry";
	initStringInfo(&select);
	for (i = 0; i < (int) lengthof(columns); i++)
	{
		DumpColumn *col = palloc0(sizeof(DumpColumn));

		col->name = (char *) columns[i][0];
		col->type = (char *) columns[i][1];
		t->columns = lappend(t->columns, col);
		appendStringInfo(&select, "%st.%s", i ? ", " : "", col->name);
	}
	t->select_sql = select.data;
}

/*
 * The dump itself, inside the caller's subtransaction.
 */
static void
RunDump(DumpState *state)
{
	MemoryContext outer = CurrentMemoryContext;
	Snapshot	snapshot;
	SyncRange	everything = {PG_INT64_MIN, PG_INT64_MAX};
	char	   *manifest;
	char	   *previous;
	int			save_nestlevel;
	int			i;

	/* a dump publishes committed rows only */
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("sync_dump cannot run in a transaction that has changed data"),
				 errdetail("A dump publishes committed rows only; this transaction's changes would be published before they are committed."),
				 errhint("Commit or roll back first, and run sync_dump in a transaction of its own.")));

	state->dir = CheckDumpDirectory();

	/*
	 * Names resolve to built-ins only, and values are written in the same
	 * formats whatever the session's settings.
	 */
	save_nestlevel = SyncPinSettings(true);

	SPI_connect();

	/* one dump at a time in this database */
	SyncExecute("SELECT pg_catalog.pg_advisory_xact_lock(1937337955, 1)",
				0, NULL, NULL, NULL);

	if (!SyncLocalMachine(&state->machine_id, &state->range))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this server has no sync identity"),
				 errhint("Say which registered machine this server is with sync_init().")));
	state->has_machine = true;
	{
		Oid			argtypes[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum(state->machine_id)};

		SyncExecute(psprintf("SELECT hostname FROM %s WHERE id = $1",
							 SyncObject("sync_machine")),
					1, argtypes, values, NULL);
		state->hostname = SyncGetText(0, 1);
	}

	/*
	 * Lock the registered tables before the snapshot is taken, so that no
	 * TRUNCATE or rewrite committed meanwhile can show an empty table.
	 */
	{
		Oid		   *relids;
		char	  **keys;

		(void) SyncRegisteredTables(AccessShareLock, &relids, &keys);
	}

	/* one snapshot for every query of the dump */
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	state->snapshot_time = GetCurrentTimestamp();

	PrepareTables(state);
	PrepareRegistry(state);
	SyncDumpClosure(state->tables, state->ntables, &state->range,
					state->level, snapshot);

	RemoveStaleTemporaryFiles(state->dir);
	/* these outlive SPI_finish (and, on error, the subtransaction) */
	state->archive_name = MemoryContextStrdup(outer,
											  psprintf("sync-" INT64_FORMAT "-%s.tar.zst",
													   state->machine_id,
													   FormatUtc(state->snapshot_time, true)));
	state->archive_path = MemoryContextStrdup(outer, psprintf("%s/%s", state->dir,
															  state->archive_name));
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(outer);

		state->archive = SyncArchiveCreate(psprintf("%s/%s-%d.tmp", state->dir,
													TempPrefix(), MyProcPid),
										   SYNC_ZSTD_LEVEL);
		MemoryContextSwitchTo(oldcxt);
	}

	manifest = BuildManifest(state, false);
	SyncArchiveAddMember(state->archive, "header.json", manifest, strlen(manifest));
	ExportTable(state, &state->registry, &everything, snapshot);
	state->rows -= state->registry.rows;	/* count table rows only */
	for (i = 0; i < state->ntables; i++)
		ExportTable(state, &state->tables[i], &state->range, snapshot);

	manifest = BuildManifest(state, true);
	SyncArchiveAddMember(state->archive, "manifest.json", manifest, strlen(manifest));
	previous = IndexedArchive(state);
	state->bytes = SyncArchiveFinish(state->archive, state->archive_path,
									 state->sha256);
	state->archive_published = true;
	WriteIndex(state);
	state->index_written = true;
	PruneOldArchives(state, previous);

	for (i = 0; i < state->ntables; i++)
		if (state->tables[i].ex_table)
			SyncExecute(psprintf("DROP TABLE %s", state->tables[i].ex_table),
						0, NULL, NULL, NULL);
	UnregisterSnapshot(snapshot);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
}

/* The dump, run in a subtransaction by sync_dump. */
static void
DumpBody(void *arg)
{
	DumpState  *state = (DumpState *) arg;

	if (state->level < 0 || state->level > 4)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid access level %d", state->level),
				 errdetail("Levels go from 0 (private) to 4 (public); a dump at level L publishes rows whose level is L or more.")));
	RunDump(state);
}

/* After a failed dump: its files and contexts are ours to release. */
static void
DumpCleanup(void *arg)
{
	DumpState  *state = (DumpState *) arg;

	SyncArchiveAbort(state->archive);
	if (state->archive_published && !state->index_written &&
		unlink(state->archive_path) != 0 && errno != ENOENT)
		elog(WARNING, "could not remove unpublished dump archive \"%s\": %m",
			 state->archive_path);
	if (state->table_sha)
		pg_cryptohash_free(state->table_sha);
	state->table_sha = NULL;
}

/*
 * sync_dump(level, anonymize, unchecked) returns (path, tables, rows,
 * excluded, bytes, sha256, duration)
 *
 * The dump runs in a subtransaction: if it fails, its files are removed,
 * the failure is recorded in sync_log (in a transaction of its own), and
 * the error is raised again.
 */
Datum
sync_dump(PG_FUNCTION_ARGS)
{
	DumpState  *state = palloc0(sizeof(DumpState));
	SyncLogEntry *log = palloc(sizeof(SyncLogEntry));
	ErrorData  *edata;
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {false};
	Interval   *duration;

	SyncEnter(fcinfo);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	state->level = PG_GETARG_INT32(0);
	state->anonymize = PG_GETARG_BOOL(1);
	state->unchecked = PG_GETARG_BOOL(2);
	SyncLogInit(log, "dump");

	edata = SyncRunInSubtransaction(DumpBody, DumpCleanup, state);
	if (edata)
	{
		log->machine_id = state->has_machine ? state->machine_id : -1;
		log->finished_at = GetCurrentTimestamp();
		log->status = "failed";
		log->message = edata->message;
		SyncLogWrite(log);
		ReThrowError(edata);
	}

	log->machine_id = state->machine_id;
	log->finished_at = GetCurrentTimestamp();
	log->status = "ok";
	log->tables = state->ntables;
	log->rows = state->rows;
	log->excluded = state->excluded;
	log->bytes = (int64) state->bytes;
	log->message = state->archive_path;
	log->details = psprintf("{\"level\": %d, \"anonymized\": %s, \"unchecked\": %s, \"sha256\": \"%s\"}",
							state->level, state->anonymize ? "true" : "false",
							state->unchecked ? "true" : "false", state->sha256);
	SyncLogWrite(log);

	duration = palloc0(sizeof(Interval));
	duration->time = log->finished_at - log->started_at;
	values[0] = CStringGetTextDatum(state->archive_path);
	values[1] = Int32GetDatum(state->ntables);
	values[2] = Int64GetDatum(state->rows);
	values[3] = Int64GetDatum(state->excluded);
	values[4] = Int64GetDatum((int64) state->bytes);
	values[5] = CStringGetTextDatum(state->sha256);
	values[6] = IntervalPGetDatum(duration);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}
