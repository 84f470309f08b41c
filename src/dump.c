/*-------------------------------------------------------------------------
 *
 * dump.c
 *		sync_dump(level, anonymize, unchecked): publish this server's own
 *		rows as one archive in sync.dump_directory.
 *
 * All queries of a dump see one snapshot, so the archive is consistent
 * across tables while other sessions go on writing.  Rows stream from the
 * executor straight into COPY text, which goes into the archive in chunks
 * of bounded size: memory stays flat whatever the table size.  What the
 * archive and the index beside it hold is format.c's; which rows a table
 * leaves out because they reference left-out rows, closure.c's.
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
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "storage/fd.h"
#include "tcop/dest.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "archive.h"
#include "closure.h"
#include "expr.h"
#include "fkeys.h"
#include "format.h"
#include "guard.h"
#include "keys.h"
#include "log.h"
#include "registry.h"
#include "settings.h"
#include "tables.h"

PG_FUNCTION_INFO_V1(sync_dump);

/* size at which a table's COPY text is cut into the next archive member */
#define SYNC_CHUNK_SIZE (8 * 1024 * 1024)

/* zstd level: fast, with a ratio close to gzip's (see doc/dump.md) */
#define SYNC_ZSTD_LEVEL 1

/* One table (or the registry) as it goes into a dump. */
typedef struct DumpTable
{
	SyncArchiveTable at;		/* as the archive describes it */
	SyncClosureTable closure;	/* which of its rows are published */
	char	   *select_sql;		/* the published columns (alias t) */
	bool		key_unchecked;	/* no index says the key is unique */
} DumpTable;

/* Everything one dump works with. */
typedef struct DumpState
{
	int			level;
	bool		anonymize;
	bool		unchecked;
	SyncMachine machine;		/* this server */
	bool		has_machine;	/* machine is known */
	TimestampTz snapshot_time;
	const char *dir;
	char	   *archive_name;
	char	   *archive_path;

	DumpTable  *tables;
	int			ntables;
	DumpTable	registry;
	SyncArchiveHeader header;	/* points into tables and registry */

	/* the archive being written, and what to remove if the dump fails */
	SyncArchive *archive;
	pg_cryptohash_ctx *table_sha;	/* of the table being written */
	bool		archive_published;	/* renamed into place */
	bool		index_written;	/* the index names it */

	/* results */
	int64		rows;
	int64		excluded;
	int64		unowned;		/* rows in no machine's range, not published */
	char	   *unowned_json;	/* per table, or NULL */
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
 * Describe one registered table for the dump: its published columns (with
 * anonymize rules applied when asked), and the condition that says which
 * local rows are published (level and filter).  The expressions are
 * validated again: the table may have changed since it was registered.
 */
static void
PrepareTable(DumpState *state, DumpTable *t, const SyncRegisteredTable *reg)
{
	Relation	rel = table_open(reg->relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	key_attnum = SyncRegisteredKey(rel, reg);
	List	   *rules = NIL;
	StringInfoData select;
	StringInfoData keep;
	int			i;

	/*
	 * The rows are read as the table's owner (ExportTable): the dumping
	 * role must be allowed to read them all itself.
	 */
	if (pg_class_aclcheck(reg->relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(reg->relid, GetUserId(), ACL_SELECT,
								  ACLMASK_ALL) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, get_relkind_objtype(rel->rd_rel->relkind),
					   RelationGetRelationName(rel));
	if (check_enable_rls(reg->relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("row-level security on table %s applies to role %s",
						SyncRelationName(reg->relid), GetUserNameFromId(GetUserId(), false)),
				 errdetail("A dump reads the table as its owner, and would publish rows a policy hides from the role dumping."),
				 errhint("Dump as the table's owner or a role with BYPASSRLS, or disable row-level security on the table.")));

	t->closure.relid = reg->relid;
	t->at.schema = get_namespace_name(RelationGetNamespace(rel));
	t->at.name = pstrdup(RelationGetRelationName(rel));
	t->at.qualname = SyncRelationName(reg->relid);
	/* rows of tables inheriting from it are theirs, not its */
	t->closure.from = (rel->rd_rel->relkind == RELKIND_RELATION) ?
		psprintf("ONLY %s", t->at.qualname) : t->at.qualname;
	t->at.key = pstrdup(NameStr(TupleDescAttr(desc, key_attnum - 1)->attname));
	t->closure.key = pstrdup(quote_identifier(t->at.key));
	t->key_unchecked = !SyncKeyIsUnique(rel, key_attnum);

	if (reg->anonymize != NULL)
	{
		rules = SyncAnonymizeSql(rel, key_attnum, reg->anonymize, "t");
		if (!state->anonymize && rules != NIL)
			ereport(WARNING,
					(errmsg("dump of table %s includes the real values of its anonymized columns",
							t->at.qualname),
					 errdetail("sync_dump was called with anonymize => false, so %d column(s) with anonymize rules, among them \"%s\", are published unchanged.",
							   list_length(rules),
							   ((SyncAnonymizedColumn *) linitial(rules))->column),
					 errhint("Publish with anonymize => true unless every subscriber may see these values.")));
	}

	initStringInfo(&select);
	t->at.columns = palloc0(sizeof(SyncColumn) * (desc->natts + 1));
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		SyncColumn *col;
		const char *value = NULL;
		ListCell   *lc;

		/* generated columns are computed by the subscriber */
		if (att->attisdropped || att->attgenerated)
			continue;
		col = &t->at.columns[t->at.ncolumns++];
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
	}
	t->select_sql = select.data;

	initStringInfo(&keep);
	if (reg->level_column != NULL)
		appendStringInfo(&keep, "t.%s >= $3", quote_identifier(reg->level_column));
	if (reg->filter != NULL && !state->unchecked)
		appendStringInfo(&keep, "%s(%s)", keep.len ? " AND " : "",
						 SyncFilterSql(rel, reg->filter, "t"));
	t->closure.keep_sql = keep.len ? psprintf("coalesce(%s, false)", keep.data) : "true";

	table_close(rel, NoLock);
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
	name = SyncChunkName(t->at.dir, list_length(t->at.files) + 1);
	if (pg_cryptohash_update(r->state->table_sha, (uint8 *) r->chunk.data,
							 r->chunk.len) < 0)
		elog(ERROR, "could not update SHA-256 digest");
	t->at.files = lappend(t->at.files, name);
	t->at.bytes += r->chunk.len;
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
		r->table->at.excluded++;
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
		{
			char	   *value = OutputFunctionCall(&r->out[i], slot->tts_values[i]);

			/* archives are UTF-8: a no-op in a UTF-8 database */
			SyncAppendCopyValue(&r->chunk,
								pg_server_to_any(value, strlen(value), PG_UTF8));
		}
	}
	appendStringInfoCharMacro(&r->chunk, '\n');
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(r->rowcxt);

	r->table->at.rows++;
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
 * A key that no index makes unique must be unique among this machine's
 * rows: a subscriber identifies rows by it.
 */
static void
CheckKeysUnique(DumpTable *t, const SyncRange *range, Snapshot snapshot)
{
	char	   *keys = SyncDuplicateKeys(t->closure.from, t->closure.key,
										 range->start, range->end, snapshot);

	if (keys != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("table %s has more than one row with the same key", t->at.qualname),
				 errdetail("Key column \"%s\" is not unique: %s.", t->at.key, keys),
				 errhint("Subscribers identify rows by their key: give each row of this machine a key of its own.")));
}

/* The query of ExportTable, run as a SyncBody. */
typedef struct ExportRun
{
	SPIPlanPtr	plan;
	SPIExecuteOptions *options;
	int			rc;
} ExportRun;

static void
RunExport(void *arg)
{
	ExportRun  *run = (ExportRun *) arg;

	run->rc = SPI_execute_plan_extended(run->plan, run->options);
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
	SyncClosureTable *c = &t->closure;
	CopyReceiver r;
	SPIPlanPtr	plan;
	ParamListInfo params;
	SPIExecuteOptions options;
	ExportRun	run;
	Oid			argtypes[3] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3];
	char	   *sql;
	int			rc;
	int			i;

	sql = psprintf("SELECT %s%s, %s FROM %s t%s"
				   " WHERE t.%s BETWEEN $1 AND $2",
				   c->keep_sql,
				   c->ex_rows > 0 ? " AND e.key IS NULL" : "",
				   t->select_sql, c->from,
				   c->ex_rows > 0 ? psprintf(" LEFT JOIN %s e ON e.key = t.%s",
											 c->ex_table, c->key) : "",
				   c->key);

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

	/*
	 * The dump's snapshot, seeing what the closure wrote; a table's filter
	 * and anonymize rules run as its owner, as a security-restricted
	 * operation (the registry has none).
	 */
	PushCopiedSnapshot(snapshot);
	UpdateActiveSnapshotCommandId();
	run.plan = plan;
	run.options = &options;
	if (OidIsValid(c->relid))
		SyncRunAs(SyncRelationOwner(c->relid), RunExport, &run);
	else
		RunExport(&run);
	rc = run.rc;
	PopActiveSnapshot();
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan_extended failed: %s: %s",
			 SPI_result_code_string(rc), sql);
	SPI_freeplan(plan);

	FlushChunk(&r, t->at.files == NIL);
	SyncSha256Finish(state->table_sha, t->at.sha256);
	state->table_sha = NULL;

	pfree(r.chunk.data);
	MemoryContextDelete(r.rowcxt);
	state->rows += t->at.rows;
	state->excluded += t->at.excluded;
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
 * The archive the current index names, or NULL (none, or an index this
 * version cannot read, which names nothing worth keeping).
 */
static char *
IndexedArchive(DumpState *state)
{
	char	   *path = psprintf("%s/%s", state->dir, SYNC_INDEX_NAME);
	FILE	   *f = AllocateFile(path, "r");
	char		buf[4096];
	size_t		n;

	if (f == NULL)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	FreeFile(f);
	buf[n] = '\0';
	return SyncIndexArchive(buf, n);
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
	DIR		   *d = AllocateDir(state->dir);
	struct dirent *de;
	List	   *doomed = NIL;
	ListCell   *lc;

	while ((de = ReadDir(d, state->dir)) != NULL)
	{
		if (SyncIsArchiveFileOf(de->d_name, state->machine.id) &&
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
 * Write the index, which names the newest archive.
 */
static void
WriteIndex(DumpState *state)
{
	SyncIndex	index;
	char	   *text;

	index.machine_id = state->machine.id;
	index.archive = state->archive_name;
	index.size = state->bytes;
	index.sha256 = state->sha256;
	index.created_at = state->snapshot_time;
	index.level = state->level;
	index.anonymized = state->anonymize;
	index.unchecked = state->unchecked;
	text = SyncBuildIndex(&index);
	SyncWriteFileDurably(psprintf("%s/%s-%d-index.tmp", state->dir,
								  TempPrefix(), MyProcPid),
						 psprintf("%s/%s", state->dir, SYNC_INDEX_NAME),
						 text, strlen(text));
}

/*
 * Read the registered tables and describe each for the dump, parents
 * first, so that subscribers can apply in archive order.
 */
static void
PrepareTables(DumpState *state)
{
	SyncRegisteredTable *regs;
	DumpTable  *described;
	Oid		   *relids;
	int		   *order;
	int			n;
	int			i;

	regs = SyncTableRegistrations(&n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no tables are registered for sync"),
				 errhint("Register the tables to publish with sync_add_table().")));

	described = palloc0(sizeof(DumpTable) * n);
	relids = palloc(sizeof(Oid) * n);
	for (i = 0; i < n; i++)
	{
		PrepareTable(state, &described[i], &regs[i]);
		relids[i] = regs[i].relid;
	}
	order = SyncParentsFirst(n, SyncTableDependencies(relids, n), NULL);

	state->ntables = n;
	state->tables = palloc0(sizeof(DumpTable) * n);
	for (i = 0; i < n; i++)
	{
		DumpTable  *t = &state->tables[i];

		*t = described[order[i]];
		t->at.dir = SyncTableDirectory(i + 1, t->at.schema, t->at.name);
	}
}

/*
 * Describe the registry (sync_machine) as a table of the dump: all of its
 * rows, so subscribers learn every machine, range and URL.
 */
static void
PrepareRegistry(DumpState *state)
{
	DumpTable  *t = &state->registry;
	StringInfoData select;
	int			i;

	memset(t, 0, sizeof(*t));
	t->closure.relid = get_relname_relid("sync_machine", SyncSchemaOid());
	t->at.schema = get_namespace_name(SyncSchemaOid());
	t->at.name = "sync_machine";
	t->at.qualname = SyncObject("sync_machine");
	t->closure.from = t->at.qualname;
	t->at.key = "id";
	t->closure.key = "id";
	t->closure.keep_sql = "true";
	t->at.dir = SYNC_REGISTRY_DIR;
	t->at.ncolumns = SYNC_REGISTRY_NCOLUMNS;
	t->at.columns = palloc0(sizeof(SyncColumn) * SYNC_REGISTRY_NCOLUMNS);
	initStringInfo(&select);
	for (i = 0; i < SYNC_REGISTRY_NCOLUMNS; i++)
	{
		t->at.columns[i].name = (char *) sync_registry_columns[i][0];
		t->at.columns[i].type = (char *) sync_registry_columns[i][1];
		appendStringInfo(&select, "%st.%s", i ? ", " : "",
						 quote_identifier(t->at.columns[i].name));
	}
	t->select_sql = select.data;
}

/*
 * Describe the archive in its header: source, options, and its tables.
 */
static void
PrepareHeader(DumpState *state)
{
	SyncArchiveHeader *h = &state->header;
	int			i;

	h->machine_id = state->machine.id;
	h->hostname = state->machine.hostname;
	h->range = state->machine.range;
	h->encoding = "UTF8";		/* whatever the database's (CopyReceive) */
	h->level = state->level;
	h->anonymized = state->anonymize;
	h->unchecked = state->unchecked;
	h->snapshot_time = state->snapshot_time;
	h->registry = &state->registry.at;
	h->ntables = state->ntables;
	h->tables = palloc(sizeof(SyncArchiveTable *) * (state->ntables + 1));
	for (i = 0; i < state->ntables; i++)
		h->tables[i] = &state->tables[i].at;
}

/* Compute which rows the closure leaves out of each table. */
static void
ComputeClosure(DumpState *state, Snapshot snapshot)
{
	SyncClosureTable **tables = palloc(sizeof(SyncClosureTable *) * (state->ntables + 1));
	int			i;

	for (i = 0; i < state->ntables; i++)
		tables[i] = &state->tables[i].closure;
	SyncDumpClosure(tables, state->ntables, &state->machine.range,
					state->level, snapshot);
}

/*
 * Write the archive: header, registry, tables, manifest; then publish it
 * and the index that names it, and prune the archives no longer named.
 */
static void
WriteArchive(DumpState *state, Snapshot snapshot, MemoryContext outer)
{
	SyncRange	everything = {PG_INT64_MIN, PG_INT64_MAX};
	char	   *manifest;
	char	   *previous;
	MemoryContext oldcxt;
	int			i;

	RemoveStaleTemporaryFiles(state->dir);
	/* these outlive SPI_finish (and, on error, the subtransaction) */
	oldcxt = MemoryContextSwitchTo(outer);
	state->archive_name = SyncArchiveFileName(state->machine.id, state->snapshot_time);
	state->archive_path = psprintf("%s/%s", state->dir, state->archive_name);
	state->archive = SyncArchiveCreate(psprintf("%s/%s-%d.tmp", state->dir,
												TempPrefix(), MyProcPid),
									   SYNC_ZSTD_LEVEL);
	MemoryContextSwitchTo(oldcxt);

	manifest = SyncBuildManifest(&state->header, false);
	SyncArchiveAddMember(state->archive, SYNC_HEADER_MEMBER, manifest, strlen(manifest));
	ExportTable(state, &state->registry, &everything, snapshot);
	state->rows -= state->registry.at.rows; /* count table rows only */
	for (i = 0; i < state->ntables; i++)
	{
		if (state->tables[i].key_unchecked)
			CheckKeysUnique(&state->tables[i], &state->machine.range, snapshot);
		ExportTable(state, &state->tables[i], &state->machine.range, snapshot);
	}

	manifest = SyncBuildManifest(&state->header, true);
	SyncArchiveAddMember(state->archive, SYNC_MANIFEST_MEMBER, manifest, strlen(manifest));
	previous = IndexedArchive(state);
	state->bytes = SyncArchiveFinish(state->archive, state->archive_path,
									 state->sha256);
	state->archive_published = true;
	WriteIndex(state);
	state->index_written = true;
	PruneOldArchives(state, previous);
}

/*
 * Rows of the registered tables that lie in no machine's range: no machine
 * publishes them, this one included.  Each table that has some gets a
 * WARNING; the counts go to the log (in memory of context outer).
 */
static void
ReportUnowned(DumpState *state, MemoryContext outer)
{
	StringInfoData json;
	MemoryContext oldcxt = MemoryContextSwitchTo(outer);
	int			i;

	initStringInfo(&json);
	MemoryContextSwitchTo(oldcxt);
	for (i = 0; i < state->ntables; i++)
	{
		DumpTable  *t = &state->tables[i];
		int64		n = SyncCountUnowned(t->closure.relid, t->at.key);

		if (n == 0)
			continue;
		SyncWarnUnowned(t->closure.relid, n, &state->machine.range);
		state->unowned += n;
		oldcxt = MemoryContextSwitchTo(outer);
		appendStringInfoString(&json, json.len ? ", " : "{");
		escape_json(&json, t->at.qualname);
		appendStringInfo(&json, ": " INT64_FORMAT, n);
		MemoryContextSwitchTo(oldcxt);
	}
	if (json.len)
	{
		appendStringInfoChar(&json, '}');
		state->unowned_json = json.data;
	}
}

/*
 * The dump itself, inside the caller's subtransaction.
 */
static void
RunDump(DumpState *state)
{
	MemoryContext outer = CurrentMemoryContext;
	Snapshot	snapshot;
	Oid		   *relids;
	char	  **keys;
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
	SyncExecute("SELECT pg_catalog.pg_advisory_xact_lock(" CppAsString2(SYNC_LOCK_DUMP) ", 1)",
				0, NULL, NULL, NULL);
	SyncRequireLocalMachine(&state->machine);
	state->has_machine = true;

	/*
	 * Lock the registered tables before the snapshot is taken, so that no
	 * TRUNCATE or rewrite committed meanwhile can show an empty table.
	 */
	(void) SyncRegisteredTables(AccessShareLock, &relids, &keys);

	/* one snapshot for every query of the dump */
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	state->snapshot_time = GetCurrentTimestamp();

	PrepareTables(state);
	PrepareRegistry(state);
	PrepareHeader(state);
	ComputeClosure(state, snapshot);
	WriteArchive(state, snapshot, outer);

	for (i = 0; i < state->ntables; i++)
		if (state->tables[i].closure.ex_table)
			SyncExecute(psprintf("DROP TABLE %s", state->tables[i].closure.ex_table),
						0, NULL, NULL, NULL);
	ReportUnowned(state, outer);
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
	/* archives are UTF-8: text of no known encoding cannot be converted */
	if (GetDatabaseEncoding() == PG_SQL_ASCII)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot dump a database whose encoding is SQL_ASCII"),
				 errdetail("Archives are UTF-8, and SQL_ASCII text has no known encoding to convert from; subscribers would refuse bytes that are not UTF-8."),
				 errhint("Move the data into a database with a real encoding, such as UTF8 (pg_dump, then restore into a database created with ENCODING 'UTF8').")));
	RunDump(state);
}

/*
 * After a failed dump: its files are ours to remove (descriptors and
 * digests go with the subtransaction's abort).
 */
static void
DumpCleanup(void *arg)
{
	DumpState  *state = (DumpState *) arg;

	SyncArchiveAbort(state->archive);
	if (state->archive_published && !state->index_written &&
		unlink(state->archive_path) != 0 && errno != ENOENT)
		elog(WARNING, "could not remove unpublished dump archive \"%s\": %m",
			 state->archive_path);
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
	Datum		values[7];
	bool		nulls[7] = {false};
	Interval   *duration;

	SyncEnter(fcinfo);
	state->level = PG_GETARG_INT32(0);
	state->anonymize = PG_GETARG_BOOL(1);
	state->unchecked = PG_GETARG_BOOL(2);
	SyncLogInit(log, "dump");

	edata = SyncRunInSubtransaction(DumpBody, DumpCleanup, state);
	if (edata)
	{
		log->machine_id = state->has_machine ? state->machine.id : -1;
		SyncLogFailure(log, edata);
	}

	log->machine_id = state->machine.id;
	log->finished_at = GetCurrentTimestamp();
	log->status = "ok";
	log->tables = state->ntables;
	log->rows = state->rows;
	log->excluded = state->excluded;
	log->bytes = (int64) state->bytes;
	log->message = state->archive_path;
	log->details = psprintf("{\"level\": %d, \"anonymized\": %s, \"unchecked\": %s, \"sha256\": \"%s\"%s%s}",
							state->level, state->anonymize ? "true" : "false",
							state->unchecked ? "true" : "false", state->sha256,
							state->unowned_json ? ", \"unowned\": " : "",
							state->unowned_json ? state->unowned_json : "");
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
	PG_RETURN_DATUM(SyncResultRow(fcinfo, values, nulls));
}
