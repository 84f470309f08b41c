/*-------------------------------------------------------------------------
 *
 * apply.c
 *		Merging a verified archive into the local tables, in one transaction.
 *
 * Tables arrive parents first.  A table whose rows of the pulled machine's
 * range are all new here (the first pull) is loaded straight into place
 * with COPY, when every table it references is already in place.  Any
 * other table is loaded into a temporary staging table and merged: new
 * rows inserted, changed rows updated (identical rows are not written at
 * all), rows the machine no longer publishes deleted, children first.
 * Only rows of the pulled machine's range are ever touched; a deletion that
 * would reach another row, through ON DELETE CASCADE, SET NULL or a plain
 * reference, fails the pull with the tables and keys named.  Reference
 * cycles between tables are applied by inserting the rows with their
 * cycle's references empty, then setting them.  No trigger is disabled:
 * every foreign key is checked as usual.
 *
 * Columns are matched by name: a column this server lacks is dropped with a
 * WARNING; a local column the archive lacks keeps its default on insert and
 * its value on update.  A table that is not registered here is skipped with
 * a WARNING.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "pull.h"
#include "sync.h"

/* A foreign key between two pulled tables. */
typedef struct ApplyEdge
{
	int			child;			/* index into pull->tables */
	int			parent;
	List	   *columns;		/* child's referencing column names */
	bool		deferrable;
	char	   *name;			/* qualified constraint name, for SET CONSTRAINTS */
} ApplyEdge;

/*
 * The archive being read by COPY: the data of one table's files in a row.
 * COPY's data source callback has no argument, hence a file-level variable,
 * set only while a COPY runs.
 */
typedef struct CopySource
{
	Pull	   *pull;
	SyncArchiveReader *reader;
	PullTable  *table;
	MemoryContext cxt;			/* outlives each COPY: for pending_name */
	bool		pending;		/* the reader is on a member of another table */
	char	   *pending_name;
	uint64		pending_size;
	uint64		bytes;
	uint64		reported;
} CopySource;

static CopySource *copy_source = NULL;

static void CheckReach(Pull *pull, int ti, bool for_update);

/* Does an archive member belong to directory dir? */
static bool
InDirectory(const char *name, const char *dir)
{
	size_t		len = strlen(dir);

	return strncmp(name, dir, len) == 0 && name[len] == '/';
}

/*
 * COPY's data source: the current table's files, one after the other.
 * Stops (returns 0) at the first member of another table, which is left
 * pending for the caller.
 */
static int
CopySourceRead(void *outbuf, int minread, int maxread)
{
	CopySource *src = copy_source;
	int			done = 0;

	/* COPY may ask again after the end: the next table's data is not its */
	if (src->pending)
		return 0;
	while (done < minread)
	{
		size_t		n = SyncArchiveRead(src->reader, (char *) outbuf + done,
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
		if (src->pending)
			break;
		/* COPY's memory is gone when it ends; the name must outlive it */
		oldcxt = MemoryContextSwitchTo(src->cxt);
		more = SyncArchiveNext(src->reader, &name, &size);
		MemoryContextSwitchTo(oldcxt);
		if (!more)
			break;
		if (!InDirectory(name, src->table->dir))
		{
			src->pending = true;
			src->pending_name = name;
			src->pending_size = size;
			break;
		}
	}
	src->bytes += done;
	if (src->bytes - src->reported >= 8 * 1024 * 1024)
	{
		src->reported = src->bytes;
		SyncPullProgress(src->pull, "loading", src->table->qualname,
						 (int64) src->bytes, 0);
	}
	return done;
}

/*
 * COPY the current table's rows (the reader is on its first file) into
 * relid, whose columns are named as in the archive.  Returns the rows
 * loaded.
 */
static uint64
CopyInto(CopySource *src, Oid relid, List *columns)
{
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;
	List	   *options;
	uint64		rows;
	CopySource *saved;

	CommandCounterIncrement();
	rel = table_open(relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	/* CopyFrom finds its target as the first range table entry */
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
										 NULL, false, false);
	options = list_make1(makeDefElem("encoding",
									 (Node *) makeString((char *) src->pull->encoding), -1));
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	saved = copy_source;
	copy_source = src;
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, CopySourceRead,
							   columns, options);
		rows = CopyFrom(cstate);
		EndCopyFrom(cstate);
	}
	PG_FINALLY();
	{
		copy_source = saved;
	}
	PG_END_TRY();
	PopActiveSnapshot();
	free_parsestate(pstate);
	table_close(rel, NoLock);
	CommandCounterIncrement();

	/* the rows loaded must be the rows checked */
	if ((int64) rows != src->table->rows)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("COPY loaded " UINT64_FORMAT " rows of table %s from the archive of machine " INT64_FORMAT ", which has " INT64_FORMAT,
						rows, src->table->qualname, src->pull->machine_id, src->table->rows)));
	return rows;
}

/* The archive columns of t that this server has, as a list of names. */
static List *
LocalColumnNames(PullTable *t, bool all)
{
	List	   *names = NIL;
	int			i;

	for (i = 0; i < t->ncolumns; i++)
		if (all || t->local[i])
			names = lappend(names, makeString(t->columns[i]));
	return names;
}

/*
 * Raise a WARNING and keep its message for the log (in memory that
 * outlives the pull's SPI connection).
 */
static void
AddWarning(Pull *pull, const char *msg, const char *hint)
{
	MemoryContext oldcxt;

	ereport(WARNING, (errmsg("%s", msg), errhint("%s", hint)));
	oldcxt = MemoryContextSwitchTo(pull->cxt);
	pull->warnings = lappend(pull->warnings, pstrdup(msg));
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Find the registered table for an archive table, and match its columns.
 */
static void
MapTable(Pull *pull, PullTable *t)
{
	Oid			nsp = get_namespace_oid(t->schema, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(t->name, nsp) : InvalidOid;
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	key;
	StringInfoData missing;
	int			nmissing = 0;
	int			i;

	t->local = palloc0(sizeof(bool) * t->ncolumns);
	if (!OidIsValid(relid) ||
		SyncExecute(psprintf("SELECT 1 FROM %s WHERE tbl = $1", SyncObject("sync_table")),
					1, argtypes, values, NULL) == 0)
	{
		AddWarning(pull, psprintf("table %s of machine " INT64_FORMAT " is not registered here; its rows were skipped",
								  t->qualname, pull->machine_id),
				   "Register it with sync_add_table() to receive its rows.");
		t->relid = InvalidOid;
		return;
	}
	t->relid = relid;

	rel = table_open(relid, AccessShareLock);
	/* rows of tables inheriting from it are not its */
	t->from = (rel->rd_rel->relkind == RELKIND_RELATION) ?
		psprintf("ONLY %s", t->qualname) : t->qualname;
	desc = RelationGetDescr(rel);
	key = SyncKeyColumn(rel);
	if (strcmp(NameStr(TupleDescAttr(desc, key - 1)->attname), t->key) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("key of table %s is \"%s\" here but \"%s\" in the archive of machine " INT64_FORMAT,
						t->qualname, NameStr(TupleDescAttr(desc, key - 1)->attname), t->key,
						pull->machine_id),
				 errhint("Rows are matched by key: the key columns must have the same name on both servers.")));

	initStringInfo(&missing);
	for (i = 0; i < t->ncolumns; i++)
	{
		AttrNumber	attnum = get_attnum(relid, t->columns[i]);

		t->local[i] = (attnum > 0 &&
					   !TupleDescAttr(desc, attnum - 1)->attgenerated);
		if (!t->local[i])
		{
			appendStringInfo(&missing, "%s\"%s\"", nmissing ? ", " : "", t->columns[i]);
			nmissing++;
		}
	}
	table_close(rel, NoLock);

	if (nmissing > 0)
		AddWarning(pull, psprintf("table %s here lacks column(s) %s of machine " INT64_FORMAT "'s archive; their values were dropped",
								  t->qualname, missing.data, pull->machine_id),
				   "Add the column(s) here to receive their values.");
	t->complete = (nmissing == 0);
}

/*
 * The foreign keys between pulled tables (by local catalog).
 */
static pg_noinline List *
ApplyEdges(Pull *pull)
{
	List	   *edges = NIL;
	int			i;

	for (i = 0; i < pull->ntables; i++)
	{
		PullTable  *t = &pull->tables[i];
		Oid			argtypes[1] = {OIDOID};
		Datum		values[1];
		int			n;
		int			r;

		if (!OidIsValid(t->relid))
			continue;
		values[0] = ObjectIdGetDatum(t->relid);
		n = SyncExecute("SELECT c.confrelid,"
						"  ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(c.conkey) WITH ORDINALITY k(n, o)"
						"          JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n"
						"         ORDER BY k.o),"
						"  c.condeferrable,"
						"  pg_catalog.quote_ident(ns.nspname) OPERATOR(pg_catalog.||) '.'"
						"    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.conname)"
						"  FROM pg_catalog.pg_constraint c"
						"  JOIN pg_catalog.pg_namespace ns ON ns.oid = c.connamespace"
						" WHERE c.contype = 'f' AND c.conrelid = $1 AND c.conparentid = 0",
						1, argtypes, values, NULL);
		for (r = 0; r < n; r++)
		{
			Oid			parent = SyncGetOid(r, 1);
			int			j;

			for (j = 0; j < pull->ntables; j++)
				if (pull->tables[j].relid == parent && OidIsValid(parent))
				{
					ApplyEdge  *edge = palloc(sizeof(ApplyEdge));
					bool		isnull;
					Datum	   *elems;
					bool	   *nulls;
					int			nelems;
					int			k;

					edge->child = i;
					edge->parent = j;
					edge->columns = NIL;
					edge->deferrable = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r],
																  SPI_tuptable->tupdesc, 3, &isnull));
					edge->name = SyncGetText(r, 4);
					deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(SPI_tuptable->vals[r],
																	   SPI_tuptable->tupdesc, 2, &isnull)),
									  TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
					for (k = 0; k < nelems; k++)
						edge->columns = lappend(edge->columns, TextDatumGetCString(elems[k]));
					edges = lappend(edges, edge);
				}
		}
	}
	return edges;
}

/* Has t rows of the pulled machine's range here? */
static bool
HasRowsInRange(Pull *pull, PullTable *t)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(pull->range.start), Int64GetDatum(pull->range.end)};

	return SyncExecute(psprintf("SELECT 1 FROM %s WHERE %s BETWEEN $1 AND $2 LIMIT 1",
								t->from, quote_identifier(t->key)),
					   2, argtypes, values, NULL) > 0;
}

/*
 * May t be loaded straight into place?  Only if none of its rows of the
 * range exist here, this server has all its columns, no row-level security
 * applies, and every pulled table it references is already in place.
 */
static bool
CanLoadDirectly(Pull *pull, PullTable *t, List *edges)
{
	ListCell   *lc;
	int			i;

	for (i = 0; i < t->ncolumns; i++)
		if (!t->local[i])
			return false;
	if (check_enable_rls(t->relid, InvalidOid, true) == RLS_ENABLED)
		return false;
	foreach(lc, edges)
	{
		ApplyEdge  *edge = lfirst(lc);
		PullTable  *parent = &pull->tables[edge->parent];

		if (&pull->tables[edge->child] == t && parent != t &&
			!parent->unchanged && !parent->direct)
			return false;
	}
	return !HasRowsInRange(pull, t);
}

/*
 * Load the archive's rows of t into a new staging table.
 */
static void
StageTable(Pull *pull, PullTable *t, CopySource *src, int position)
{
	StringInfoData sql;
	Oid			stage_relid;
	int			i;

	t->stage = psprintf("pg_temp.sync_pull_stage_%d", position);
	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TEMP TABLE %s (", strchr(t->stage, '.') + 1);
	for (i = 0; i < t->ncolumns; i++)
	{
		char	   *type = "text";

		if (t->local[i])
		{
			AttrNumber	attnum = get_attnum(t->relid, t->columns[i]);
			Oid			typid;
			int32		typmod;
			Oid			collid;

			get_atttypetypmodcoll(t->relid, attnum, &typid, &typmod, &collid);
			type = format_type_with_typemod(typid, typmod);
		}
		appendStringInfo(&sql, "%s%s %s", i ? ", " : "",
						 quote_identifier(t->columns[i]), type);
	}
	appendStringInfo(&sql, ", PRIMARY KEY (%s)) ON COMMIT DROP", quote_identifier(t->key));
	SyncExecute(sql.data, 0, NULL, NULL, NULL);
	stage_relid = RangeVarGetRelid(makeRangeVar("pg_temp", strchr(t->stage, '.') + 1, -1),
								   NoLock, false);
	(void) CopyInto(src, stage_relid, LocalColumnNames(t, true));
	SyncExecute(psprintf("ANALYZE %s", t->stage), 0, NULL, NULL, NULL);
}

/*
 * Is column of t written in a second step, because it references a table
 * applied after t (a reference cycle)?
 */
static bool
IsBackColumn(Pull *pull, List *edges, int *order_pos, int ti, const char *column)
{
	ListCell   *lc;

	foreach(lc, edges)
	{
		ApplyEdge  *edge = lfirst(lc);
		ListCell   *c;

		/* a deferrable reference is checked at the end instead */
		if (edge->child != ti || edge->parent == ti || edge->deferrable ||
			!pull->tables[edge->parent].stage ||
			order_pos[edge->parent] < order_pos[ti])
			continue;
		foreach(c, edge->columns)
			if (strcmp(lfirst(c), column) == 0)
				return true;
	}
	return false;
}

/* Is a column NOT NULL? */
static bool
AttNotNull(Oid relid, const char *column)
{
	HeapTuple	tup = SearchSysCacheAttName(relid, column);
	bool		notnull;

	if (!HeapTupleIsValid(tup))
		return false;
	notnull = ((Form_pg_attribute) GETSTRUCT(tup))->attnotnull;
	ReleaseSysCache(tup);
	return notnull;
}

/*
 * Insert the staged rows that are new, then update the rows that differ;
 * back columns (references into a cycle) are left out: see ApplyBackColumns.
 */
static void
MergeTable(Pull *pull, List *edges, int *order_pos, int ti)
{
	PullTable  *t = &pull->tables[ti];
	StringInfoData cols;
	StringInfoData vals;
	StringInfoData set;
	StringInfoData differ;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(pull->range.start), Int64GetDatum(pull->range.end)};
	const char *key = quote_identifier(t->key);
	int			i;

	StringInfoData old_row;
	StringInfoData new_row;

	initStringInfo(&cols);
	initStringInfo(&vals);
	initStringInfo(&set);
	initStringInfo(&differ);
	initStringInfo(&old_row);
	initStringInfo(&new_row);
	for (i = 0; i < t->ncolumns; i++)
	{
		const char *c;
		bool		back;

		if (!t->local[i])
			continue;
		c = quote_identifier(t->columns[i]);
		back = IsBackColumn(pull, edges, order_pos, ti, t->columns[i]);
		if (back && AttNotNull(t->relid, t->columns[i]))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot apply the reference cycle through column \"%s\" of table %s",
							t->columns[i], t->qualname),
					 errdetail("Rows of a reference cycle are inserted with the cycle's references empty, then completed; the column is NOT NULL."),
					 errhint("Allow NULL in the column, or make its foreign key DEFERRABLE.")));
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", c);
		appendStringInfo(&vals, "%s%s%s", vals.len ? ", " : "", back ? "NULL AS " : "s.", c);
		if (strcmp(t->columns[i], t->key) == 0 || back)
			continue;
		appendStringInfo(&set, "%s%s = s.%s", set.len ? ", " : "", c, c);
		appendStringInfo(&old_row, "%st.%s", old_row.len ? ", " : "", c);
		appendStringInfo(&new_row, "%ss.%s", new_row.len ? ", " : "", c);
	}

	SyncPullProgress(pull, "inserting", t->qualname, 0, 0);
	t->inserted += SyncExecute(psprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s s"
										" WHERE s.%s BETWEEN $1 AND $2"
										"   AND NOT EXISTS (SELECT 1 FROM %s t WHERE t.%s = s.%s)",
										t->qualname, cols.data, vals.data, t->stage,
										key, t->from, key, key),
							   2, argtypes, values, NULL);
	if (set.len > 0)
	{
		CheckReach(pull, ti, true);
		SyncPullProgress(pull, "updating", t->qualname, 0, t->inserted);

		/*
		 * Rows differ if their images differ: a value that is equal but not
		 * the same (1.5 and 1.50, '1 day' and '24:00:00') is written too, so
		 * that the copy becomes exactly what the publisher has.
		 */
		t->updated += SyncExecute(psprintf("UPDATE %s t SET %s FROM %s s"
										   " WHERE t.%s = s.%s AND t.%s BETWEEN $1 AND $2"
										   "   AND pg_catalog.record_image_ne(ROW(%s), ROW(%s))",
										   t->from, set.data, t->stage,
										   key, key, key, old_row.data, new_row.data),
								  2, argtypes, values, NULL);
	}
}

/*
 * Second step for a table in a reference cycle: set its back columns, now
 * that every table of the cycle has its rows.  A row counts as updated only
 * if it existed before this pull.
 */
static void
ApplyBackColumns(Pull *pull, List *edges, int *order_pos, int ti)
{
	PullTable  *t = &pull->tables[ti];
	StringInfoData set;
	StringInfoData old_row;
	StringInfoData new_row;
	const char *key = quote_identifier(t->key);
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(pull->range.start), Int64GetDatum(pull->range.end)};
	int			i;

	initStringInfo(&set);
	initStringInfo(&old_row);
	initStringInfo(&new_row);
	for (i = 0; i < t->ncolumns; i++)
	{
		const char *c = quote_identifier(t->columns[i]);

		if (!t->local[i] || !IsBackColumn(pull, edges, order_pos, ti, t->columns[i]))
			continue;
		appendStringInfo(&set, "%s%s = s.%s", set.len ? ", " : "", c, c);
		appendStringInfo(&old_row, "%st.%s", old_row.len ? ", " : "", c);
		appendStringInfo(&new_row, "%ss.%s", new_row.len ? ", " : "", c);
	}
	if (set.len == 0)
		return;
	(void) SyncExecute(psprintf("UPDATE %s t SET %s FROM %s s"
								" WHERE t.%s = s.%s AND t.%s BETWEEN $1 AND $2"
								"   AND pg_catalog.record_image_ne(ROW(%s), ROW(%s))",
								t->from, set.data, t->stage, key, key, key,
								old_row.data, new_row.data),
					   2, argtypes, values, NULL);
}

/*
 * SQL condition: row alias of table t is one this pull deletes.
 */
static char *
ScheduledSql(Pull *pull, PullTable *t, const char *alias)
{
	const char *key = quote_identifier(t->key);

	return psprintf("(%s.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
					" AND NOT EXISTS (SELECT 1 FROM %s s WHERE s.%s = %s.%s))",
					alias, key, pull->range.start, pull->range.end,
					t->stage, key, alias, key);
}

/*
 * No row that this pull must not change may be reached through a foreign
 * key referencing t, whatever the key's action (CASCADE, SET NULL, SET
 * DEFAULT, or refusing): neither by deleting t's rows (for_update false) nor
 * by changing the values it references (for_update true).  Rows of the
 * pulled range in pulled tables are the pull's to change; any other
 * referencing row fails the pull, named, before anything is changed.  The
 * check sees every row (row_security off: a policy that would hide one makes
 * the check fail rather than miss it), in t and in its partitions.
 */
static void
CheckReach(Pull *pull, int ti, bool for_update)
{
	PullTable  *t = &pull->tables[ti];
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(t->relid)};
	int			n;
	int			r;
	Oid		   *children;
	char	  **joins;
	char	  **refcols;
	int			save_nestlevel;

	n = SyncExecute("SELECT c.conrelid, " SYNC_FK_JOIN_SQL("r", "t") ","
					"  (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ',' ORDER BY k.i)"
					"     FROM pg_catalog.unnest(c.confkey) WITH ORDINALITY k(n, i)"
					"     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n)"
					"  FROM pg_catalog.pg_constraint c"
					" WHERE c.contype = 'f' AND c.conparentid = 0"
					"   AND (c.confrelid = $1"
					"        OR c.confrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree($1)))",
					1, argtypes, values, NULL);
	children = palloc(sizeof(Oid) * (n + 1));
	joins = palloc(sizeof(char *) * (n + 1));
	refcols = palloc(sizeof(char *) * (n + 1));
	for (r = 0; r < n; r++)
	{
		children[r] = SyncGetOid(r, 1);
		joins[r] = SyncGetText(r, 2);
		refcols[r] = SyncGetText(r, 3);
	}

	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("row_security", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	for (r = 0; r < n; r++)
	{
		PullTable  *child = NULL;
		const char *rkey = "r.ctid::text";
		const char *rfrom;
		const char *spared;
		char	   *sql;
		int			j;

		/* keys never change: only references to other columns matter here */
		if (for_update && strcmp(refcols[r], quote_identifier(t->key)) == 0)
			continue;
		for (j = 0; j < pull->ntables; j++)
			if (pull->tables[j].relid == children[r] && OidIsValid(children[r]))
				child = &pull->tables[j];

		/* how to name a referencing row: its single-column key, else its ctid */
		{
			Oid			types[1] = {OIDOID};
			Datum		vals[1] = {ObjectIdGetDatum(children[r])};

			if (SyncExecute("SELECT a.attname FROM pg_catalog.pg_index i"
							"  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
							" WHERE i.indrelid = $1 AND i.indisprimary AND i.indnkeyatts = 1",
							1, types, vals, NULL) > 0)
				rkey = psprintf("r.%s::text", quote_identifier(SyncGetText(0, 1)));
		}
		rfrom = (get_rel_relkind(children[r]) == RELKIND_RELATION) ?
			psprintf("ONLY %s", SyncRelationName(children[r])) : SyncRelationName(children[r]);

		/* the referencing rows this pull may change itself */
		if (child && for_update)
			spared = psprintf("(r.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT ")",
							  quote_identifier(child->key), pull->range.start, pull->range.end);
		else if (child && child->stage)
			spared = ScheduledSql(pull, child, "r");
		else
			spared = "false";

		if (for_update)
		{
			StringInfoData old_row;
			StringInfoData new_row;
			char	   *copy = pstrdup(refcols[r]);
			char	   *col;

			initStringInfo(&old_row);
			initStringInfo(&new_row);
			for (col = strtok(copy, ","); col; col = strtok(NULL, ","))
			{
				appendStringInfo(&old_row, "%st.%s", old_row.len ? ", " : "", col);
				appendStringInfo(&new_row, "%ss.%s", new_row.len ? ", " : "", col);
			}
			sql = psprintf("SELECT %s, t.%s FROM %s r JOIN %s t ON %s"
						   " JOIN %s s ON s.%s = t.%s"
						   " WHERE t.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
						   "   AND pg_catalog.record_image_ne(ROW(%s), ROW(%s)) AND NOT %s LIMIT 5",
						   rkey, quote_identifier(t->key), rfrom, t->from, joins[r],
						   t->stage, quote_identifier(t->key), quote_identifier(t->key),
						   quote_identifier(t->key), pull->range.start, pull->range.end,
						   old_row.data, new_row.data, spared);
		}
		else
			sql = psprintf("SELECT %s, t.%s FROM %s r JOIN %s t ON %s"
						   " WHERE %s AND NOT %s LIMIT 5",
						   rkey, quote_identifier(t->key), rfrom, t->from, joins[r],
						   ScheduledSql(pull, t, "t"), spared);

		if (SyncExecute(sql, 0, NULL, NULL, NULL) > 0)
		{
			StringInfoData rkeys;
			StringInfoData tkeys;
			uint64		k;

			initStringInfo(&rkeys);
			initStringInfo(&tkeys);
			for (k = 0; k < SPI_processed; k++)
			{
				appendStringInfo(&rkeys, "%s%s", k ? ", " : "", SyncGetText(k, 1));
				appendStringInfo(&tkeys, "%s%s", k ? ", " : "", SyncGetText(k, 2));
			}
			if (for_update)
				ereport(ERROR,
						(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
						 errmsg("pull of machine " INT64_FORMAT " would change values of table %s that rows of table %s reference",
								pull->machine_id, t->qualname, SyncRelationName(children[r])),
						 errdetail("Rows of %s (%s) reference columns %s of rows of %s (keys %s) that machine " INT64_FORMAT " changes; the change would reach rows this pull must not change. Nothing was applied.",
								   SyncRelationName(children[r]), rkeys.data, refcols[r],
								   t->qualname, tkeys.data, pull->machine_id),
						 errhint("Change the referencing rows first, then pull again.")));
			ereport(ERROR,
					(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
					 errmsg("pull of machine " INT64_FORMAT " would delete rows of table %s that rows of table %s still reference",
							pull->machine_id, t->qualname, SyncRelationName(children[r])),
					 errdetail("Rows of %s (%s) reference rows of %s (keys %s) that machine " INT64_FORMAT " no longer publishes; deleting them would reach rows this pull must not change. Nothing was applied.",
							   SyncRelationName(children[r]), rkeys.data, t->qualname,
							   tkeys.data, pull->machine_id),
					 errhint("Change or delete the referencing rows first, then pull again.")));
		}
	}
	AtEOXact_GUC(true, save_nestlevel);
}

/*
 * Delete t's rows of the range that the archive no longer has; in a
 * reference cycle, their back columns are emptied first (ClearBackColumns).
 */
static void
DeleteMissing(Pull *pull, int ti)
{
	PullTable  *t = &pull->tables[ti];

	CheckReach(pull, ti, false);
	SyncPullProgress(pull, "deleting", t->qualname, 0, 0);
	t->deleted += SyncExecute(psprintf("DELETE FROM %s t WHERE %s",
									   t->from, ScheduledSql(pull, t, "t")),
							  0, NULL, NULL, NULL);
}

static void
ClearBackColumns(Pull *pull, List *edges, int *order_pos, int ti)
{
	PullTable  *t = &pull->tables[ti];
	StringInfoData set;
	int			i;

	initStringInfo(&set);
	for (i = 0; i < t->ncolumns; i++)
		if (t->local[i] && IsBackColumn(pull, edges, order_pos, ti, t->columns[i]))
			appendStringInfo(&set, "%s%s = NULL", set.len ? ", " : "",
							 quote_identifier(t->columns[i]));
	if (set.len > 0)
		(void) SyncExecute(psprintf("UPDATE %s t SET %s WHERE %s",
									t->from, set.data, ScheduledSql(pull, t, "t")),
						   0, NULL, NULL, NULL);
}

/*
 * Order the staged tables parents first (reference cycles in archive
 * order); order_pos[i] is table i's place.
 */
static int *
StagedOrder(Pull *pull, List *edges, int **order_pos)
{
	int		   *order = palloc(sizeof(int) * (pull->ntables + 1));
	bool	   *placed = palloc0(sizeof(bool) * (pull->ntables + 1));
	int			n = 0;
	int			i;

	*order_pos = palloc(sizeof(int) * (pull->ntables + 1));
	for (i = 0; i < pull->ntables; i++)
	{
		(*order_pos)[i] = -1;
		if (!pull->tables[i].stage)
			placed[i] = true;
	}
	for (;;)
	{
		int			pick = -1;

		for (i = 0; i < pull->ntables && pick < 0; i++)
		{
			ListCell   *lc;
			bool		ready = !placed[i];

			foreach(lc, edges)
			{
				ApplyEdge  *edge = lfirst(lc);

				if (ready && edge->child == i && edge->parent != i &&
					!placed[edge->parent])
					ready = false;
			}
			if (ready)
				pick = i;
		}
		for (i = 0; i < pull->ntables && pick < 0; i++)
			if (!placed[i])
				pick = i;
		if (pick < 0)
			break;
		placed[pick] = true;
		(*order_pos)[pick] = n;
		order[n++] = pick;
	}
	order[n] = -1;
	return order;
}

/*
 * Merge the registry rows of the archive: machines unknown here are added;
 * a known machine's hostname, URL and contact change only through its own
 * archive or the registry authority's; ranges never change through a pull,
 * and a range that conflicts fails it.
 */
static void
ApplyRegistry(Pull *pull, CopySource *src)
{
	PullTable  *r = &pull->registry;
	StringInfoData sql;
	Oid			stage;
	Oid			argtypes[2] = {INT8OID, BOOLOID};
	Datum		values[2];
	static const char *const needed[] = {"id", "hostname", "sync_url", "sync_contact", "sync_start", "sync_end"};
	int			i;

	for (i = 0; i < (int) lengthof(needed); i++)
	{
		int			j;
		bool		found = false;

		for (j = 0; j < r->ncolumns; j++)
			if (strcmp(r->columns[j], needed[i]) == 0)
				found = true;
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("registry in the archive of machine " INT64_FORMAT " lacks column \"%s\"",
							pull->machine_id, needed[i])));
	}

	initStringInfo(&sql);
	appendStringInfoString(&sql, "CREATE TEMP TABLE sync_pull_registry (");
	for (i = 0; i < r->ncolumns; i++)
		appendStringInfo(&sql, "%s%s text", i ? ", " : "", quote_identifier(r->columns[i]));
	appendStringInfoString(&sql, ") ON COMMIT DROP");
	SyncExecute(sql.data, 0, NULL, NULL, NULL);
	stage = RangeVarGetRelid(makeRangeVar("pg_temp", "sync_pull_registry", -1), NoLock, false);
	r->local = palloc(sizeof(bool) * r->ncolumns);
	for (i = 0; i < r->ncolumns; i++)
		r->local[i] = true;
	(void) CopyInto(src, stage, LocalColumnNames(r, true));

	/* a range that conflicts with what this server knows fails the pull */
	if (SyncExecute(psprintf("SELECT a.id, a.sync_start, a.sync_end, m.id, m.sync_start, m.sync_end"
							 "  FROM (SELECT id::int8 AS id, sync_start::int8 AS sync_start, sync_end::int8 AS sync_end"
							 "          FROM pg_temp.sync_pull_registry) a"
							 "  JOIN %s m ON (m.id = a.id AND (m.sync_start, m.sync_end) <> (a.sync_start, a.sync_end))"
							 "    OR (m.id <> a.id AND m.sync_start <= a.sync_end AND m.sync_end >= a.sync_start)"
							 " ORDER BY a.id LIMIT 1",
							 SyncObject("sync_machine")),
					0, NULL, NULL, NULL) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_EXCLUSION_VIOLATION),
				 errmsg("registry in the archive of machine " INT64_FORMAT " conflicts with this server's",
						pull->machine_id),
				 errdetail("It gives machine %s the range [%s, %s]; here machine %s owns [%s, %s].",
						   SyncGetText(0, 1), SyncGetText(0, 2), SyncGetText(0, 3),
						   SyncGetText(0, 4), SyncGetText(0, 5), SyncGetText(0, 6)),
				 errhint("Ranges never change through a pull; correct the registry with sync_register_machine() on the side that is wrong.")));
	if (SyncExecute("SELECT 1 FROM pg_temp.sync_pull_registry"
					" WHERE id IS NULL OR hostname IS NULL OR hostname = ''"
					"    OR (sync_url IS NOT NULL AND sync_url !~* '^(https?|file)://[^/?#@]*([/?#]|$)')"
					"    OR id::int8 < 0 OR sync_start::int8 > sync_end::int8",
					0, NULL, NULL, NULL) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("registry in the archive of machine " INT64_FORMAT " has an invalid entry",
						pull->machine_id),
				 errdetail("Every machine needs an id, a hostname, a valid range and, if any, an http, https or file URL without credentials.")));

	/* a hostname that another machine has here */
	values[0] = Int64GetDatum(pull->machine_id);
	values[1] = BoolGetDatum(pull->machine_id == (int64) sync_registry_authority);
	if (SyncExecute(psprintf("SELECT a.id, a.hostname, m.id FROM pg_temp.sync_pull_registry a"
							 "  JOIN %s m ON m.hostname = a.hostname AND m.id <> a.id::int8"
							 " WHERE NOT EXISTS (SELECT 1 FROM %s k WHERE k.id = a.id::int8)"
							 "    OR a.id::int8 = $1 OR $2 LIMIT 1",
							 SyncObject("sync_machine"), SyncObject("sync_machine")),
					2, argtypes, values, NULL) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("registry in the archive of machine " INT64_FORMAT " conflicts with this server's",
						pull->machine_id),
				 errdetail("It gives machine %s the hostname \"%s\", which machine %s has here.",
						   SyncGetText(0, 1), SyncGetText(0, 2), SyncGetText(0, 3)),
				 errhint("Hostnames identify machines; correct the registry with sync_register_machine() on the side that is wrong.")));

	values[0] = Int64GetDatum(pull->machine_id);
	values[1] = BoolGetDatum(pull->machine_id == (int64) sync_registry_authority);
	SyncExecute(psprintf("INSERT INTO %s (id, hostname, sync_url, sync_contact, sync_start, sync_end)"
						 " SELECT id::int8, hostname, sync_url, sync_contact, sync_start::int8, sync_end::int8"
						 "   FROM pg_temp.sync_pull_registry a"
						 "  WHERE NOT EXISTS (SELECT 1 FROM %s m WHERE m.id = a.id::int8)",
						 SyncObject("sync_machine"), SyncObject("sync_machine")),
				0, NULL, NULL, NULL);
	SyncExecute(psprintf("UPDATE %s m SET hostname = a.hostname, sync_url = a.sync_url,"
						 "       sync_contact = a.sync_contact, updated_at = pg_catalog.now()"
						 "  FROM pg_temp.sync_pull_registry a"
						 " WHERE m.id = a.id::int8 AND (m.id = $1 OR $2)"
						 "   AND (m.hostname, m.sync_url, m.sync_contact)"
						 "       IS DISTINCT FROM (a.hostname, a.sync_url, a.sync_contact)",
						 SyncObject("sync_machine")),
				2, argtypes, values, NULL);
	SyncExecute("DROP TABLE pg_temp.sync_pull_registry", 0, NULL, NULL, NULL);
}

/*
 * Apply a verified archive.  The caller is connected to SPI.
 */
void
SyncApplyArchive(Pull *pull)
{
	CopySource	src;
	List	   *edges;
	char	   *name;
	uint64		size;
	int		   *order;
	int		   *order_pos;
	int			save_nestlevel;
	int			i;

	/*
	 * While rows are applied, local triggers and defaults see the caller's
	 * search_path (behind pg_catalog, so that built-ins stay what our SQL
	 * means) and time zone; COPY reads the publisher's date, interval and
	 * money formats.
	 */
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path",
							 (pull->session_path && pull->session_path[0]) ?
							 psprintf("pg_catalog, %s, pg_temp", pull->session_path) :
							 "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("DateStyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("IntervalStyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("lc_monetary", "C", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	for (i = 0; i < pull->ntables; i++)
		MapTable(pull, &pull->tables[i]);
	edges = ApplyEdges(pull);

	memset(&src, 0, sizeof(src));
	src.pull = pull;
	src.cxt = CurrentMemoryContext;
	src.reader = SyncArchiveOpen(pull->archive_path);
	PG_TRY();
	{
		/* the header was read when verifying */
		if (!SyncArchiveNext(src.reader, &name, &size))
			elog(ERROR, "archive lost its header");
		for (;;)
		{
			PullTable  *t = NULL;

			if (src.pending)
			{
				name = src.pending_name;
				size = src.pending_size;
				src.pending = false;
			}
			else if (!SyncArchiveNext(src.reader, &name, &size))
				break;

			if (InDirectory(name, pull->registry.dir))
			{
				src.table = &pull->registry;
				SyncPullProgress(pull, "registry", NULL, 0, 0);
				ApplyRegistry(pull, &src);
				continue;
			}
			for (i = 0; i < pull->ntables && t == NULL; i++)
				if (InDirectory(name, pull->tables[i].dir))
					t = &pull->tables[i];
			if (t == NULL || !OidIsValid(t->relid) || t->unchanged)
				continue;		/* skipped; its other files too */

			src.table = t;
			if (CanLoadDirectly(pull, t, edges))
			{
				if (pg_class_aclcheck(t->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
					aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(t->relid));
				t->direct = true;
				SyncPullProgress(pull, "loading", t->qualname, 0, 0);
				t->inserted += CopyInto(&src, t->relid, LocalColumnNames(t, false));
			}
			else
			{
				SyncPullProgress(pull, "staging", t->qualname, 0, 0);
				StageTable(pull, t, &src, (int) (t - pull->tables) + 1);
			}
		}
	}
	PG_FINALLY();
	{
		SyncArchiveClose(src.reader);
	}
	PG_END_TRY();

	/* merge staged tables parents first, then delete children first */
	order = StagedOrder(pull, edges, &order_pos);
	{
		ListCell   *lc;

		/* deferrable references of a cycle are checked once all is in */
		foreach(lc, edges)
		{
			ApplyEdge  *edge = lfirst(lc);

			if (edge->deferrable && edge->parent != edge->child &&
				pull->tables[edge->parent].stage && pull->tables[edge->child].stage &&
				order_pos[edge->parent] > order_pos[edge->child])
				SyncExecute(psprintf("SET CONSTRAINTS %s DEFERRED", edge->name),
							0, NULL, NULL, NULL);
		}
	}
	for (i = 0; order[i] >= 0; i++)
		MergeTable(pull, edges, order_pos, order[i]);
	for (i = 0; order[i] >= 0; i++)
		ApplyBackColumns(pull, edges, order_pos, order[i]);
	for (i = 0; order[i] >= 0; i++)
		ClearBackColumns(pull, edges, order_pos, order[i]);
	while (--i >= 0)
		DeleteMissing(pull, order[i]);

	/* every reference is checked before the pull ends, deferred ones too */
	SyncExecute("SET CONSTRAINTS ALL IMMEDIATE", 0, NULL, NULL, NULL);

	for (i = 0; i < pull->ntables; i++)
	{
		PullTable  *t = &pull->tables[i];

		if (t->stage)
			SyncExecute(psprintf("DROP TABLE %s", t->stage), 0, NULL, NULL, NULL);
		pull->inserted += t->inserted;
		pull->updated += t->updated;
		pull->deleted += t->deleted;
	}
	AtEOXact_GUC(true, save_nestlevel);
}
