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
 * A dump also writes a delta against the previous dump: the rows whose
 * values changed or that are new, and the keys of the rows no longer
 * published, whatever the reason (deleted, level, filter, closure or an
 * anonymize rule).  It knows them from the state the previous dump left
 * (chain.c): a row whose values hash as before is not even rendered.  A
 * full archive is written only when the deltas since the last one would
 * cost a subscriber more (sync.dump_deltas, sync.dump_delta_ratio), when
 * the state cannot be trusted, or when asked; a dump that changes nothing
 * writes nothing.
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
#include "chain.h"
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

/*
 * Size at which a table's COPY text is cut into the next archive member:
 * small enough that the checksum and the compressor read it from the cache.
 */
#define SYNC_CHUNK_SIZE (1024 * 1024)

/* zstd level: fast, with a ratio close to gzip's (see doc/dump.md) */
#define SYNC_ZSTD_LEVEL 1

/* zstd threads compressing a full archive beside the backend */
#define SYNC_ZSTD_WORKERS 1

/* One table (or the registry) as it goes into a dump. */
typedef struct DumpTable
{
	SyncArchiveTable at;		/* as the full archive describes it */
	SyncArchiveTable dat;		/* as the delta describes it */
	SyncArchiveTable deleted;	/* the delta's keys no longer published */
	SyncClosureTable closure;	/* which of its rows are published */
	char	   *select_sql;		/* the published columns (alias t) */
	bool		key_unchecked;	/* no index says the key is unique */
	Oid			key_type;		/* int2, int4 or int8 */
	uint64		shape;			/* hash of its description */
	SyncStateTable *prev;		/* what the previous dump published of it */
} DumpTable;

/* One archive being written (the full one or the delta). */
typedef struct DumpArchive
{
	SyncArchive *archive;		/* NULL: not written by this dump */
	SyncArchiveHeader header;
	char	   *name;
	char	   *path;
	bool		published;		/* renamed into place */
	uint64		bytes;
	char		sha256[SYNC_SHA256_HEX_LEN];
} DumpArchive;

/* Everything one dump works with. */
typedef struct DumpState
{
	int			level;
	bool		anonymize;
	bool		unchecked;
	bool		force_full;		/* write a full archive, whatever changed */
	SyncMachine machine;		/* this server */
	bool		has_machine;	/* machine is known */
	TimestampTz snapshot_time;
	const char *dir;

	DumpTable  *tables;
	int			ntables;
	DumpTable	registry;

	/* the chain: the previous index and state, and this dump's place */
	SyncIndex  *prev_index;		/* NULL: none this version reads */
	SyncState  *prev;			/* NULL: none that can be trusted */
	char	   *chain;
	int64		seq;
	bool		changed;		/* anything differs from the previous dump */
	uint64		registry_digest;

	/* the archives being written, and what to remove if the dump fails */
	DumpArchive full;
	DumpArchive delta;
	SyncStateWriter *writer;	/* NULL: no state kept (sync.dump_deltas = 0) */
	bool		index_written;	/* the index names them */
	const char *kind;			/* what was published */

	/* results */
	int64		rows;
	int64		excluded;
	int64		unowned;		/* rows in no machine's range, not published */
	char	   *unowned_json;	/* per table, or NULL */
	uint64		bytes;
	char		sha256[SYNC_SHA256_HEX_LEN];
} DumpState;

/* A table's COPY text on its way into one archive. */
typedef struct DumpOutput
{
	SyncArchive *archive;		/* NULL: not written */
	SyncArchiveTable *at;		/* its account there */
	StringInfoData chunk;		/* COPY text not yet in the archive */
	pg_cryptohash_ctx *sha;
} DumpOutput;

/* Receives a table's rows from the executor and writes them as COPY text. */
typedef struct CopyReceiver
{
	DestReceiver pub;
	DumpState  *state;
	DumpTable  *table;
	FmgrInfo   *out;			/* output function per column */
	int16	   *typlen;			/* per column, for SyncValueHash */
	bool	   *typbyval;
	MemoryContext cxt;			/* for what outlives the query: file names */
	MemoryContext rowcxt;		/* reset after every row */
	StringInfoData row;			/* the row being written */
	DumpOutput	full;			/* every row */
	DumpOutput	delta;			/* rows new or changed */
	bool		tracked;		/* the state records its rows (not the registry's) */
	uint64		digest;			/* of the rows published */
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
				 errhint("Set it to the directory your web server publishes at this machine's sync_url, e.g. LOAD 'sync'; ALTER SYSTEM SET sync.dump_directory = '/var/lib/postgresql/sync'; SELECT pg_reload_conf();")));
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
	StringInfoData shape;
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
	initStringInfo(&shape);
	appendStringInfo(&shape, "%s key %s:", t->at.qualname, t->at.key);
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
		if (strcmp(col->name, t->at.key) == 0)
			t->at.key_index = t->at.ncolumns - 1;
		appendStringInfo(&shape, "%s %s%s,", col->name, col->type, col->anonymized ? " a" : "");
	}
	t->select_sql = select.data;
	t->key_type = TupleDescAttr(desc, key_attnum - 1)->atttypid;
	t->shape = SyncRowHash(shape.data, shape.len);

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
 * Put the buffered COPY text of o into its archive as the table's next
 * member (also when empty, if force: every table has at least one file).
 * cxt is for what outlives the query: file names.
 */
static void
FlushChunk(DumpOutput *o, MemoryContext cxt, bool force)
{
	SyncArchiveTable *at = o->at;
	MemoryContext oldcxt;
	char	   *name;

	if (o->archive == NULL || (o->chunk.len == 0 && !force))
		return;

	/* called from inside the executor too, whose memory dies with the query */
	oldcxt = MemoryContextSwitchTo(cxt);
	name = SyncChunkName(at->dir, list_length(at->files) + 1);
	if (pg_cryptohash_update(o->sha, (uint8 *) o->chunk.data, o->chunk.len) < 0)
		elog(ERROR, "could not update SHA-256 digest");
	at->files = lappend(at->files, name);
	at->bytes += o->chunk.len;
	MemoryContextSwitchTo(oldcxt);
	SyncArchiveAddMember(o->archive, name, o->chunk.data, o->chunk.len);
	resetStringInfo(&o->chunk);
}

/* Start a table's output into archive (NULL: none), accounted in at. */
static void
BeginOutput(DumpOutput *o, SyncArchive *archive, SyncArchiveTable *at)
{
	o->archive = archive;
	o->at = at;
	if (archive == NULL)
		return;
	initStringInfo(&o->chunk);
	o->sha = SyncSha256Begin();
}

/* Append one row (len bytes, without its newline) to o. */
static inline void
OutputRow(CopyReceiver *r, DumpOutput *o, const char *row, int len)
{
	if (o->archive == NULL)
		return;
	appendBinaryStringInfo(&o->chunk, row, len);
	appendStringInfoCharMacro(&o->chunk, '\n');
	if (o->chunk.len >= SYNC_CHUNK_SIZE)
		FlushChunk(o, r->cxt, false);
}

/* End a table's output: its last file, and its checksum. */
static void
EndOutput(DumpOutput *o, MemoryContext cxt)
{
	if (o->archive == NULL)
		return;
	FlushChunk(o, cxt, o->at->files == NIL);
	SyncSha256Finish(o->sha, o->at->sha256);
	pfree(o->chunk.data);
}

/* DestReceiver startup: look up the output function of every column. */
static void
CopyStartup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	CopyReceiver *r = (CopyReceiver *) self;
	int			i;

	r->out = SyncOutputFunctions(typeinfo);
	r->typlen = palloc(sizeof(int16) * typeinfo->natts);
	r->typbyval = palloc(sizeof(bool) * typeinfo->natts);
	for (i = 0; i < typeinfo->natts; i++)
	{
		r->typlen[i] = TupleDescAttr(typeinfo, i)->attlen;
		r->typbyval[i] = TupleDescAttr(typeinfo, i)->attbyval;
	}
}

/* The key of a published row (column 0 is the keep flag). */
static inline int64
RowKey(CopyReceiver *r, TupleTableSlot *slot)
{
	Datum		d = slot->tts_values[r->table->at.key_index + 1];

	switch (r->table->key_type)
	{
		case INT2OID:
			return DatumGetInt16(d);
		case INT4OID:
			return DatumGetInt32(d);
		default:
			return DatumGetInt64(d);
	}
}

/*
 * DestReceiver: one row.  Column 1 says whether the row is published; the
 * others are the published values.  A row goes into the full archive, if
 * one is written, and into the delta unless the previous dump published
 * the same values under its key; the state records it.  A row that the
 * full archive does not need and that did not change is not rendered at
 * all: its text's hash is the previous dump's.
 */
static bool
CopyReceive(TupleTableSlot *slot, DestReceiver *self)
{
	CopyReceiver *r = (CopyReceiver *) self;
	DumpTable  *t = r->table;
	MemoryContext oldcxt;
	SyncStateRow row;
	int64		pos = -1;
	bool		same = false;

	slot_getallattrs(slot);
	if (slot->tts_isnull[0] || !DatumGetBool(slot->tts_values[0]))
	{
		t->at.excluded++;
		return true;
	}

	oldcxt = MemoryContextSwitchTo(r->rowcxt);
	if (r->tracked)
	{
		row.key = RowKey(r, slot);
		row.value = SyncValueHash(slot, 1, r->typlen, r->typbyval);
		if (t->prev != NULL && (pos = SyncStateLookup(t->prev, row.key)) >= 0)
		{
			t->prev->seen[pos] = 1;
			same = (t->prev->rows[pos].value == row.value);
		}
	}
	if (!same || r->full.archive != NULL)
	{
		resetStringInfo(&r->row);
		SyncAppendCopyRow(&r->row, slot, 1, r->out);
		row.text = SyncRowHash(r->row.data, r->row.len);
		OutputRow(r, &r->full, r->row.data, r->row.len);
		if (!same && r->delta.archive != NULL)
		{
			OutputRow(r, &r->delta, r->row.data, r->row.len);
			t->dat.rows++;
		}
	}
	else
		row.text = t->prev->rows[pos].text;
	if (r->tracked)
		SyncStateAddRow(r->state->writer, &row);
	r->digest += row.text;
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(r->rowcxt);

	t->at.rows++;
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
 * Put into the delta the keys of t that the previous dump published and
 * this one did not meet (deleted, or no longer published).
 */
static void
WriteDeletedKeys(DumpState *state, DumpTable *t, MemoryContext cxt)
{
	DumpOutput	o;
	int64		i;

	BeginOutput(&o, state->delta.archive, &t->deleted);
	if (o.archive == NULL)
		return;
	for (i = 0; t->prev != NULL && i < t->prev->nrows; i++)
	{
		if (t->prev->seen[i])
			continue;
		appendStringInfo(&o.chunk, INT64_FORMAT "\n", t->prev->rows[i].key);
		t->deleted.rows++;
		if (o.chunk.len >= SYNC_CHUNK_SIZE)
			FlushChunk(&o, cxt, false);
	}
	EndOutput(&o, cxt);
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
	initStringInfo(&r.row);
	BeginOutput(&r.full, state->full.archive, &t->at);
	BeginOutput(&r.delta, state->delta.archive, &t->dat);
	r.tracked = (state->writer != NULL && t != &state->registry);
	if (r.tracked)
	{
		t->prev = SyncStateFind(state->prev, t->at.qualname, true);
		SyncStateBeginTable(state->writer, t->at.qualname, t->shape);
	}

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

	EndOutput(&r.full, r.cxt);
	EndOutput(&r.delta, r.cxt);
	t->at.has_digest = t->dat.has_digest = true;
	t->at.digest = t->dat.digest = r.digest;
	t->at.published = t->dat.published = t->at.rows;
	if (t == &state->registry)
		state->registry_digest = r.digest;
	else if (state->writer != NULL)
	{
		SyncStateEndTable(state->writer, t->at.rows, r.digest);
		WriteDeletedKeys(state, t, r.cxt);
		if (t->dat.rows > 0 || t->deleted.rows > 0 || t->prev == NULL)
			state->changed = true;
		SyncStateRelease(t->prev);
	}

	pfree(r.row.data);
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
 * The index the previous dump left, or NULL (none, or one this version
 * cannot read, which names nothing worth keeping).
 */
static SyncIndex *
PreviousIndex(DumpState *state)
{
	return SyncIndexInDirectory(state->dir, state->machine.id, NULL, NULL);
}

/* Is name one of the files index names? */
static bool
NamedByIndex(const SyncIndex *index, const char *name)
{
	int			i;

	if (index == NULL)
		return false;
	if (strcmp(index->archive, name) == 0)
		return true;
	for (i = 0; i < index->ndeltas; i++)
		if (strcmp(index->deltas[i].archive, name) == 0)
			return true;
	return false;
}

/*
 * Remove this machine's archives and deltas except those the new index
 * names and those the previous one named (a subscriber may still be
 * fetching them).  Files are told apart by name, never by their times: a
 * clock that went back changes nothing.
 */
static void
PruneOldArchives(DumpState *state, const SyncIndex *index)
{
	DIR		   *d = AllocateDir(state->dir);
	struct dirent *de;
	List	   *doomed = NIL;
	ListCell   *lc;

	while ((de = ReadDir(d, state->dir)) != NULL)
	{
		if (SyncIsArchiveFileOf(de->d_name, state->machine.id) &&
			!NamedByIndex(index, de->d_name) &&
			!NamedByIndex(state->prev_index, de->d_name))
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
 * Write the index: the full archive (this dump's, or the previous one's),
 * and the deltas kept: the previous index's and this dump's, the oldest
 * dropped while there are more than sync.dump_deltas or while they add up
 * to more than sync.dump_delta_ratio of the full archive (never those
 * that lead on from it).  Returns it, for pruning.
 */
static SyncIndex *
WriteIndex(DumpState *state)
{
	SyncIndex  *index = palloc0(sizeof(SyncIndex));
	const SyncIndex *prev = state->prev_index;
	uint64		total = 0;
	int			first = 0;
	int			n = 0;
	int			i;
	char	   *text;

	index->machine_id = state->machine.id;
	if (state->full.archive != NULL)
	{
		index->archive = state->full.name;
		index->size = state->full.bytes;
		index->sha256 = state->full.sha256;
		index->full_seq = state->seq;
	}
	else
	{
		index->archive = prev->archive;
		index->size = prev->size;
		index->sha256 = prev->sha256;
		index->full_seq = prev->full_seq;
	}
	index->created_at = state->snapshot_time;
	index->level = state->level;
	index->anonymized = state->anonymize;
	index->unchecked = state->unchecked;
	index->chain = state->chain;
	index->seq = state->seq;

	/* the deltas: the previous ones continue only with this dump's */
	index->deltas = palloc0(sizeof(SyncIndexDelta) * (SYNC_MAX_DELTAS + 2));
	if (state->delta.archive != NULL)
	{
		for (i = 0; prev != NULL && i < prev->ndeltas; i++)
			index->deltas[n++] = prev->deltas[i];
		index->deltas[n].seq = state->seq;
		index->deltas[n].archive = state->delta.name;
		index->deltas[n].size = state->delta.bytes;
		index->deltas[n].sha256 = state->delta.sha256;
		n++;
	}
	for (i = 0; i < n; i++)
		total += index->deltas[i].size;
	while (first < n && index->deltas[first].seq <= index->full_seq &&
		   (n - first > sync_dump_deltas ||
			(double) total > sync_dump_delta_ratio * (double) index->size))
		total -= index->deltas[first++].size;
	index->deltas += first;
	index->ndeltas = n - first;

	text = SyncBuildIndex(index);
	SyncWriteFileDurably(psprintf("%s/%s-%d-index.tmp", state->dir,
								  TempPrefix(), MyProcPid),
						 psprintf("%s/%s", state->dir, SYNC_INDEX_NAME),
						 text, strlen(text));
	return index;
}

/* Path of this database's state in the dump directory. */
static char *
StatePath(DumpState *state)
{
	return psprintf("%s/.sync-" UINT64_FORMAT "-%u.state", state->dir,
					GetSystemIdentifier(), MyDatabaseId);
}

/*
 * Where this dump stands in the chain: the previous index and state, this
 * dump's number, and what it writes.  A delta needs a state that is the
 * one the index names, and tables described as they were; a full archive
 * is written when there can be no delta, when asked, or when the deltas
 * since the last one would cost a subscriber more than a new one.
 */
static void
PrepareChain(DumpState *state, MemoryContext outer)
{
	SyncIndex  *prev = PreviousIndex(state);
	bool		delta = false;
	bool		full = true;
	MemoryContext oldcxt;
	int			i;

	/* the index outlives SPI (pruning, and cleanup after an error) */
	oldcxt = MemoryContextSwitchTo(outer);
	state->prev_index = prev;
	state->chain = (prev != NULL && prev->chain != NULL) ? pstrdup(prev->chain) : SyncNewChainName();
	state->seq = ((prev != NULL && prev->chain != NULL) ? prev->seq : 0) + 1;
	MemoryContextSwitchTo(oldcxt);

	if (sync_dump_deltas > 0)
		state->prev = SyncStateRead(StatePath(state));
	if (state->prev != NULL &&
		(prev == NULL || prev->chain == NULL || strcmp(state->prev->chain, prev->chain) != 0 ||
		 state->prev->seq != prev->seq))
		state->prev = NULL;		/* not the state of the index there */

	if (state->prev != NULL)
	{
		bool		added = false;

		delta = true;
		for (i = 0; i < state->ntables; i++)
		{
			SyncStateTable *p = SyncStateFind(state->prev, state->tables[i].at.qualname, false);

			if (p != NULL && p->shape != state->tables[i].shape)
				delta = false;	/* columns, types or rules changed */
			added |= (p == NULL);
		}
		if (delta)
		{
			uint64		bytes;
			int			count = prev->ndeltas - SyncDeltasAfter(prev, prev->full_seq, &bytes);

			/*
			 * A table registered since is in a new full archive too: deltas
			 * that follow a full archive have its tables.
			 */
			/* and one no longer registered: a new subscriber gets none of it */
			added |= (state->prev->ntables != state->ntables);
			full = (state->force_full || added || count >= sync_dump_deltas ||
					(double) bytes >= sync_dump_delta_ratio * (double) prev->size);
		}
	}
	if (!delta)
		state->prev = NULL;
	state->changed = !delta || state->force_full;

	oldcxt = MemoryContextSwitchTo(outer);
	if (full)
	{
		state->full.name = SyncArchiveFileName(state->machine.id, state->snapshot_time, false);
		state->full.path = psprintf("%s/%s", state->dir, state->full.name);
		state->full.archive = SyncArchiveCreate(psprintf("%s/%s-%d.tmp", state->dir,
														 TempPrefix(), MyProcPid),
												SYNC_ZSTD_LEVEL, SYNC_ZSTD_WORKERS);
	}
	if (delta)
	{
		state->delta.name = SyncArchiveFileName(state->machine.id, state->snapshot_time, true);
		state->delta.path = psprintf("%s/%s", state->dir, state->delta.name);
		state->delta.archive = SyncArchiveCreate(psprintf("%s/%s-%d-delta.tmp", state->dir,
														  TempPrefix(), MyProcPid),
												 SYNC_ZSTD_LEVEL, 0);
	}
	if (sync_dump_deltas > 0)
		state->writer = SyncStateBegin(psprintf("%s/%s-%d-state.tmp", state->dir,
												TempPrefix(), MyProcPid),
									   state->chain, state->seq, state->ntables);
	MemoryContextSwitchTo(oldcxt);
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
 * Describe an archive in its header: source, options, chain, and its
 * tables (each table's description in it, at offset within DumpTable).
 */
static void
PrepareHeader(DumpState *state, SyncArchiveHeader *h, size_t offset, bool delta)
{
	int			i;

	h->machine_id = state->machine.id;
	h->hostname = state->machine.hostname;
	h->range = state->machine.range;
	h->encoding = "UTF8";		/* whatever the database's (CopyReceive) */
	h->level = state->level;
	h->anonymized = state->anonymize;
	h->unchecked = state->unchecked;
	h->snapshot_time = state->snapshot_time;
	h->chain = state->chain;
	h->seq = state->seq;
	h->delta = delta;
	h->base = state->seq - 1;
	h->registry = (SyncArchiveTable *) ((char *) &state->registry + offset);
	h->ntables = state->ntables;
	h->tables = palloc(sizeof(SyncArchiveTable *) * (state->ntables + 1));
	for (i = 0; i < state->ntables; i++)
		h->tables[i] = (SyncArchiveTable *) ((char *) &state->tables[i] + offset);
}

/*
 * The delta's description of each table: the full archive's, with the
 * keys it deletes beside.
 */
static void
PrepareDeltaTables(DumpState *state)
{
	int			i;

	for (i = -1; i < state->ntables; i++)
	{
		DumpTable  *t = (i < 0) ? &state->registry : &state->tables[i];

		t->dat = t->at;
		if (i < 0)
			continue;
		t->deleted = t->at;
		t->deleted.dir = SyncDeletedDirectory(t->at.dir);
		t->deleted.ncolumns = 1;
		t->deleted.columns = &t->at.columns[t->at.key_index];
		t->deleted.key_index = 0;
		t->dat.deleted = &t->deleted;
	}
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

/* Add the header (first) or the manifest (last) to an archive being written. */
static void
AddDocument(DumpArchive *a, bool manifest)
{
	char	   *text;

	if (a->archive == NULL)
		return;
	text = SyncBuildManifest(&a->header, manifest);
	SyncArchiveAddMember(a->archive, manifest ? SYNC_MANIFEST_MEMBER : SYNC_HEADER_MEMBER,
						 text, strlen(text));
}

/* End an archive with its manifest, and put it in place. */
static void
FinishArchive(DumpArchive *a)
{
	if (a->archive == NULL)
		return;
	AddDocument(a, true);
	a->bytes = SyncArchiveFinish(a->archive, a->path, a->sha256);
	a->published = true;
}

/*
 * Write the archives: header, registry, tables, manifest, for the full
 * archive and the delta at once; then, unless nothing changed, publish
 * them, the state and the index that names them, and prune the files no
 * longer named.
 */
static void
WriteArchive(DumpState *state, Snapshot snapshot, MemoryContext outer)
{
	SyncRange	everything = {PG_INT64_MIN, PG_INT64_MAX};
	SyncIndex  *index;
	int			i;

	RemoveStaleTemporaryFiles(state->dir);
	PrepareChain(state, outer);
	PrepareHeader(state, &state->full.header, offsetof(DumpTable, at), false);
	PrepareDeltaTables(state);
	PrepareHeader(state, &state->delta.header, offsetof(DumpTable, dat), true);

	AddDocument(&state->full, false);
	AddDocument(&state->delta, false);
	ExportTable(state, &state->registry, &everything, snapshot);
	state->rows -= state->registry.at.rows; /* count table rows only */
	if (state->prev != NULL && state->registry_digest != state->prev->registry)
		state->changed = true;
	if (state->prev != NULL && state->prev->ntables != state->ntables)
		state->changed = true;	/* a table no longer registered */
	for (i = 0; i < state->ntables; i++)
	{
		if (state->tables[i].key_unchecked)
			CheckKeysUnique(&state->tables[i], &state->machine.range, snapshot);
		ExportTable(state, &state->tables[i], &state->machine.range, snapshot);
	}

	if (!state->changed)
	{
		/* the same as the previous dump: nothing new is published */
		SyncArchiveDiscard(state->full.archive);
		SyncArchiveDiscard(state->delta.archive);
		SyncStateAbort(state->writer, true);
		state->full.archive = state->delta.archive = NULL;
		state->delta.name = state->delta.path = NULL;
		state->writer = NULL;
		state->kind = "unchanged";
		state->seq--;
		state->full.name = state->prev_index->archive;
		state->full.path = psprintf("%s/%s", state->dir, state->full.name);
		state->full.bytes = state->prev_index->size;
		strlcpy(state->full.sha256, state->prev_index->sha256, SYNC_SHA256_HEX_LEN);
		PruneOldArchives(state, state->prev_index);
		/* the newest file the index names: the delta to its state, if any */
		if (state->prev_index->ndeltas > 0 &&
			state->prev_index->deltas[state->prev_index->ndeltas - 1].seq == state->prev_index->seq)
		{
			SyncIndexDelta *d = &state->prev_index->deltas[state->prev_index->ndeltas - 1];

			state->delta.name = d->archive;
			state->delta.path = psprintf("%s/%s", state->dir, d->archive);
			state->delta.bytes = d->size;
			strlcpy(state->delta.sha256, d->sha256, SYNC_SHA256_HEX_LEN);
		}
		return;
	}

	FinishArchive(&state->full);
	FinishArchive(&state->delta);
	if (state->writer != NULL)
		SyncStateFinish(state->writer, state->registry_digest, StatePath(state));
	index = WriteIndex(state);
	state->index_written = true;
	PruneOldArchives(state, index);
	state->kind = (state->full.archive && state->delta.archive) ? "full and delta" :
		state->full.archive ? "full" : "delta";
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

	SyncCheckLevel(state->level);
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
	DumpArchive *archives[2] = {&state->full, &state->delta};
	int			i;

	SyncStateAbort(state->writer, false);
	for (i = 0; i < 2; i++)
	{
		DumpArchive *a = archives[i];

		SyncArchiveAbort(a->archive);
		if (a->published && !state->index_written &&
			unlink(a->path) != 0 && errno != ENOENT)
			elog(WARNING, "could not remove unpublished dump archive \"%s\": %m",
				 a->path);
	}
}

/*
 * sync_dump(level, anonymize, unchecked, full) returns (path, tables, rows,
 * excluded, bytes, sha256, duration, kind, seq, changed, deleted): the
 * file written (the delta, if one was), what it holds, and what was
 * published ('full', 'delta', 'full and delta' or 'unchanged').
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
	DumpArchive *written;
	Datum		values[11];
	bool		nulls[11] = {false};
	Interval   *duration;
	int64		changed = 0;
	int64		deleted = 0;
	int			i;

	SyncEnter(fcinfo);
	state->level = PG_GETARG_INT32(0);
	state->anonymize = PG_GETARG_BOOL(1);
	state->unchecked = PG_GETARG_BOOL(2);
	state->force_full = PG_GETARG_BOOL(3);
	SyncLogInit(log, "dump");

	edata = SyncRunInSubtransaction(DumpBody, DumpCleanup, state);
	if (edata)
	{
		log->machine_id = state->has_machine ? state->machine.id : -1;
		SyncLogFailure(log, edata);
	}

	written = (state->full.archive != NULL || state->delta.name == NULL) ?
		&state->full : &state->delta;
	for (i = 0; i < state->ntables && state->delta.name != NULL; i++)
	{
		changed += state->tables[i].dat.rows;
		deleted += state->tables[i].deleted.rows;
	}
	log->machine_id = state->machine.id;
	log->finished_at = GetCurrentTimestamp();
	log->status = "ok";
	log->tables = state->ntables;
	log->rows = state->rows;
	log->excluded = state->excluded;
	log->bytes = (int64) written->bytes;
	log->message = written->path;
	log->details = psprintf("{\"level\": %d, \"anonymized\": %s, \"unchecked\": %s, \"sha256\": \"%s\", "
							"\"published\": \"%s\", \"chain\": \"%s\", \"seq\": " INT64_FORMAT
							", \"changed\": " INT64_FORMAT ", \"deleted\": " INT64_FORMAT "%s%s}",
							state->level, state->anonymize ? "true" : "false",
							state->unchecked ? "true" : "false", written->sha256,
							state->kind, state->chain, state->seq, changed, deleted,
							state->unowned_json ? ", \"unowned\": " : "",
							state->unowned_json ? state->unowned_json : "");
	SyncLogWrite(log);

	duration = palloc0(sizeof(Interval));
	duration->time = log->finished_at - log->started_at;
	values[0] = CStringGetTextDatum(written->path);
	values[1] = Int32GetDatum(state->ntables);
	values[2] = Int64GetDatum(state->rows);
	values[3] = Int64GetDatum(state->excluded);
	values[4] = Int64GetDatum((int64) written->bytes);
	values[5] = CStringGetTextDatum(written->sha256);
	values[6] = IntervalPGetDatum(duration);
	values[7] = CStringGetTextDatum(state->kind);
	values[8] = Int64GetDatum(state->seq);
	values[9] = Int64GetDatum(changed);
	values[10] = Int64GetDatum(deleted);
	nulls[9] = nulls[10] = (state->delta.name == NULL);
	PG_RETURN_DATUM(SyncResultRow(fcinfo, values, nulls));
}
