/*-------------------------------------------------------------------------
 *
 * load.c
 *		Loading the tables of an archive into relations with COPY.
 *
 * The rows of an archive are read by PostgreSQL's own COPY, from the
 * archive's members as they stream out of the reader, without a copy on
 * disk: the same parser that a DBA's COPY would use reads every value, as
 * UTF-8, which it validates.  A table's files follow each other in the
 * archive; COPY reads them as one stream and stops at the first member of
 * another table, which is left for the caller.
 *
 * Keys are checked on the values COPY parsed, and on nothing else: COPY's
 * WHERE clause lets only rows whose key lies in the publisher's range
 * through, before any trigger sees them, and the rows COPY loaded must be
 * as many as the archive was checked to hold.  When they are fewer, the
 * table's rows are read again, unfiltered, into a scratch table, to name
 * the key that was out of range (or, if none was, a trigger).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "format.h"
#include "load.h"
#include "progress.h"


/*
 * The loader COPY reads from.  COPY's data source callback has no
 * argument, hence a file-level variable, set only while a COPY runs.
 */
static SyncLoader *current_loader = NULL;

/*
 * Open the archive at path (verified to unpack to limit bytes), of
 * machine_id, which owns range here, and skip its header (read when the
 * archive was verified).
 */
void
SyncLoaderOpen(SyncLoader *loader, const char *path, uint64 limit,
			   int64 machine_id, const SyncRange *range)
{
	char	   *name;
	uint64		size;

	memset(loader, 0, sizeof(*loader));
	loader->path = path;
	loader->limit = limit;
	loader->machine_id = machine_id;
	loader->range = *range;
	loader->cxt = CurrentMemoryContext;
	loader->reader = SyncArchiveOpen(path, limit);
	if (!SyncArchiveNext(loader->reader, &name, &size))
		elog(ERROR, "archive lost its header");
}

/*
 * Go to the next member: the one a COPY stopped at, or the reader's next.
 * False at the end of the archive.
 */
bool
SyncLoaderNext(SyncLoader *loader, char **name)
{
	uint64		size;

	if (loader->pending)
	{
		loader->pending = false;
		*name = loader->pending_name;
		return true;
	}
	return SyncArchiveNext(loader->reader, name, &size);
}

/* The rows that end in len bytes of COPY text: its raw newlines. */
static int64
CountRows(const char *data, size_t len)
{
	const char *end = data + len;
	int64		rows = 0;

	while (data < end && (data = memchr(data, '\n', end - data)) != NULL)
	{
		rows++;
		data++;
	}
	return rows;
}

/*
 * COPY's data source: the current table's files, one after the other.
 * Stops (returns 0) at the first member of another table, which is left
 * pending.
 */
static int
LoaderRead(void *outbuf, int minread, int maxread)
{
	SyncLoader *loader = current_loader;
	int			done = 0;

	/* COPY may ask again after the end: the next table's data is not its */
	if (loader->pending)
		return 0;
	while (done < minread)
	{
		size_t		n = SyncArchiveRead(loader->reader, (char *) outbuf + done,
										maxread - done);
		char	   *name;
		uint64		size;
		MemoryContext oldcxt;
		bool		more;

		if (n > 0)
		{
			done += n;
			continue;
		}
		/* COPY's memory is gone when it ends; the name must outlive it */
		oldcxt = MemoryContextSwitchTo(loader->cxt);
		more = SyncArchiveNext(loader->reader, &name, &size);
		MemoryContextSwitchTo(oldcxt);
		if (!more)
			break;
		if (!SyncMemberOf(name, loader->dir))
		{
			loader->pending = true;
			loader->pending_name = name;
			break;
		}
	}
	loader->bytes += done;
	SyncProgressRows(CountRows((const char *) outbuf, done));
	return done;
}

/*
 * COPY's WHERE clause (implicitly ANDed): column attnum of rel, an integer,
 * lies in range.  Built from the integer operators themselves, so nothing
 * in anyone's search_path takes part.
 */
static List *
RangeQual(Relation rel, AttrNumber attnum, const SyncRange *range)
{
	Oid			type = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid;
	Var		   *key = makeVar(1, attnum, type, -1, InvalidOid, 0);
	Oid			ge = get_opfamily_member(INTEGER_BTREE_FAM_OID, type, INT8OID,
										 BTGreaterEqualStrategyNumber);
	Oid			le = get_opfamily_member(INTEGER_BTREE_FAM_OID, type, INT8OID,
										 BTLessEqualStrategyNumber);
	List	   *qual;

	if (!OidIsValid(ge) || !OidIsValid(le))
		elog(ERROR, "key column of \"%s\" is not an integer", RelationGetRelationName(rel));
	qual = list_make2(make_opclause(ge, BOOLOID, false, (Expr *) key,
									(Expr *) makeConst(INT8OID, -1, InvalidOid, 8,
													   Int64GetDatum(range->start),
													   false, FLOAT8PASSBYVAL),
									InvalidOid, InvalidOid),
					  make_opclause(le, BOOLOID, false, (Expr *) copyObject(key),
									(Expr *) makeConst(INT8OID, -1, InvalidOid, 8,
													   Int64GetDatum(range->end),
													   false, FLOAT8PASSBYVAL),
									InvalidOid, InvalidOid));
	fix_opfuncids((Node *) qual);
	return qual;
}

/*
 * COPY the rows of the table whose files are in dir (the loader is on its
 * first file) into relid, whose columns are named as in the archive; with
 * key, only rows whose key lies in the loader's range.  Returns the rows
 * loaded.
 */
static uint64
CopyRows(SyncLoader *loader, const char *dir, const char *qualname,
		 Oid relid, List *columns, const char *key)
{
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;
	List	   *options;
	List	   *volatile where = NIL;
	uint64		rows;
	SyncLoader *saved;

	loader->dir = dir;
	loader->qualname = qualname;
	loader->bytes = 0;

	CommandCounterIncrement();
	rel = table_open(relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	/* CopyFrom finds its target as the first range table entry */
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
										 NULL, false, false);
	options = list_make1(makeDefElem("encoding", (Node *) makeString("UTF8"), -1));
	if (key)
		where = RangeQual(rel, get_attnum(relid, key), &loader->range);
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	saved = current_loader;
	current_loader = loader;
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, (Node *) where, NULL, false,
							   LoaderRead, columns, options);
		rows = CopyFrom(cstate);
		EndCopyFrom(cstate);
	}
	PG_FINALLY();
	{
		current_loader = saved;
	}
	PG_END_TRY();
	PopActiveSnapshot();
	free_parsestate(pstate);
	table_close(rel, NoLock);
	CommandCounterIncrement();
	return rows;
}

/*
 * COPY loaded fewer rows of the table in dir than the archive holds: read
 * them again, unfiltered, into a scratch table, and report a key outside
 * the range if there is one.  The caller is connected to SPI.
 */
static void
ReportOutsideKey(SyncLoader *loader, const char *dir, const char *qualname,
				 List *columns, const char *key)
{
	SyncLoader	again;
	char	   *name;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(loader->range.start),
	Int64GetDatum(loader->range.end)};

	SyncLoaderOpen(&again, loader->path, loader->limit, loader->machine_id,
				   &loader->range);
	while (SyncLoaderNext(&again, &name))
		if (SyncMemberOf(name, dir))
		{
			(void) SyncLoadAsText(&again, dir, qualname, columns,
								  "sync_pull_keys", -1);
			break;
		}
	SyncLoaderClose(&again);

	if (SyncExecute(psprintf("SELECT %s FROM pg_temp.sync_pull_keys"
							 " WHERE %s IS NULL OR %s::pg_catalog.numeric NOT BETWEEN $1 AND $2 LIMIT 1",
							 quote_identifier(key), quote_identifier(key), quote_identifier(key)),
					2, argtypes, values, NULL) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("archive of machine " INT64_FORMAT " has a row of table %s with key %s, outside the machine's range [" INT64_FORMAT ", " INT64_FORMAT "]",
						loader->machine_id, qualname,
						SyncGetText(0, 1) ? SyncGetText(0, 1) : "NULL",
						loader->range.start, loader->range.end),
				 errdetail("A machine may publish only rows of its own range; nothing was applied.")));
	SyncExecute("DROP TABLE pg_temp.sync_pull_keys", 0, NULL, NULL, NULL);
}

/*
 * COPY the rows of the table whose files are in dir (the loader is on its
 * first file) into relid, whose columns are named as in the archive.  With
 * key (the name of the key column), every row's key must lie in the
 * loader's range.  The archive was checked to hold expected_rows (-1: not
 * known); returns the rows loaded, which must be as many.  The caller is
 * connected to SPI.
 */
uint64
SyncLoad(SyncLoader *loader, const char *dir, const char *qualname,
		 Oid relid, List *columns, const char *key, int64 expected_rows)
{
	uint64		rows = CopyRows(loader, dir, qualname, relid, columns, key);

	if ((int64) rows == expected_rows || expected_rows < 0)
		return rows;
	if (key)
		ReportOutsideKey(loader, dir, qualname, columns, key);
	ereport(ERROR,
			(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
			 errmsg("pull of machine " INT64_FORMAT " planned to load " INT64_FORMAT " rows of table %s, but " UINT64_FORMAT " were",
					loader->machine_id, expected_rows, qualname, rows),
			 errdetail("A trigger or rule changed what COPY did; nothing was applied."),
			 errhint("Sync does not disable triggers: a BEFORE trigger that returns NULL for another machine's rows keeps its copy from matching what its owner published. Let such rows through, for example when their key is outside this machine's range.")));
}

/*
 * Load the rows of the table in dir (as SyncLoad, without keys) into a new
 * temporary table called name, dropped at commit, whose columns are named
 * as in columns and all of type text.  Returns its OID.
 */
Oid
SyncLoadAsText(SyncLoader *loader, const char *dir, const char *qualname,
			   List *columns, const char *name, int64 expected_rows)
{
	StringInfoData sql;
	ListCell   *lc;
	Oid			relid;

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TEMP TABLE %s (", quote_identifier(name));
	foreach(lc, columns)
		appendStringInfo(&sql, "%s%s text", lc == list_head(columns) ? "" : ", ",
						 quote_identifier(strVal(lfirst(lc))));
	appendStringInfoString(&sql, ") ON COMMIT DROP");
	SyncExecute(sql.data, 0, NULL, NULL, NULL);
	relid = RangeVarGetRelid(makeRangeVar("pg_temp", pstrdup(name), -1), NoLock, false);
	(void) SyncLoad(loader, dir, qualname, relid, columns, NULL, expected_rows);
	return relid;
}

/* Close the archive (after an error, its abort does). */
void
SyncLoaderClose(SyncLoader *loader)
{
	SyncArchiveClose(loader->reader);
	loader->reader = NULL;
}
