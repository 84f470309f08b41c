/*-------------------------------------------------------------------------
 *
 * apply.c
 *		Merging a verified archive into the local tables, in one transaction.
 *
 * Tables arrive parents first.  A table whose rows of the pulled machine's
 * range are all new here (the first pull) is loaded straight into place
 * with COPY (load.c), when every table it references is already in place.  Any
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
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "apply.h"
#include "fkeys.h"
#include "load.h"
#include "progress.h"
#include "registry.h"
#include "settings.h"
#include "tables.h"

static void CheckReach(Pull *pull, int ti, bool for_update);

/* The archive columns of t that this server has, as a list of names. */
static List *
LocalColumnNames(PullTable *t, bool all)
{
	List	   *names = NIL;
	int			i;

	for (i = 0; i < t->at.ncolumns; i++)
		if (all || t->local[i])
			names = lappend(names, makeString(t->at.columns[i].name));
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
	Oid			nsp = get_namespace_oid(t->at.schema, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(t->at.name, nsp) : InvalidOid;
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	key;
	StringInfoData missing;
	int			nmissing = 0;
	int			i;

	t->local = palloc0(sizeof(bool) * t->at.ncolumns);
	if (!SyncTableIsRegistered(relid))
	{
		AddWarning(pull, psprintf("table %s of machine " INT64_FORMAT " is not registered here; its rows were skipped",
								  t->at.qualname, pull->machine_id),
				   "Register it with sync_add_table() to receive its rows.");
		t->relid = InvalidOid;
		return;
	}
	t->relid = relid;

	rel = table_open(relid, AccessShareLock);
	/* rows of tables inheriting from it are not its */
	t->from = (rel->rd_rel->relkind == RELKIND_RELATION) ?
		psprintf("ONLY %s", t->at.qualname) : t->at.qualname;
	desc = RelationGetDescr(rel);
	key = SyncKeyColumn(rel);
	if (strcmp(NameStr(TupleDescAttr(desc, key - 1)->attname), t->at.key) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("key of table %s is \"%s\" here but \"%s\" in the archive of machine " INT64_FORMAT,
						t->at.qualname, NameStr(TupleDescAttr(desc, key - 1)->attname), t->at.key,
						pull->machine_id),
				 errhint("Rows are matched by key: the key columns must have the same name on both servers.")));

	initStringInfo(&missing);
	for (i = 0; i < t->at.ncolumns; i++)
	{
		AttrNumber	attnum = get_attnum(relid, t->at.columns[i].name);

		t->local[i] = (attnum > 0 &&
					   !TupleDescAttr(desc, attnum - 1)->attgenerated);
		if (!t->local[i])
		{
			appendStringInfo(&missing, "%s\"%s\"", nmissing ? ", " : "", t->at.columns[i].name);
			nmissing++;
		}
	}
	table_close(rel, NoLock);

	if (nmissing > 0)
		AddWarning(pull, psprintf("table %s here lacks column(s) %s of machine " INT64_FORMAT "'s archive; their values were dropped",
								  t->at.qualname, missing.data, pull->machine_id),
				   "Add the column(s) here to receive their values.");
	t->complete = (nmissing == 0);
}

/*
 * The foreign keys between the pulled tables registered here, by the local
 * catalog.
 */
static List *
PulledForeignKeys(Pull *pull)
{
	Oid		   *relids = palloc(sizeof(Oid) * (pull->ntables + 1));
	int			i;

	for (i = 0; i < pull->ntables; i++)
		relids[i] = pull->tables[i].relid;
	return SyncForeignKeysAmong(relids, pull->ntables);
}

/* Has t rows of the pulled machine's range here? */
static bool
HasRowsInRange(Pull *pull, PullTable *t)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(pull->range.start), Int64GetDatum(pull->range.end)};

	return SyncExecute(psprintf("SELECT 1 FROM %s WHERE %s BETWEEN $1 AND $2 LIMIT 1",
								t->from, quote_identifier(t->at.key)),
					   2, argtypes, values, NULL) > 0;
}

/*
 * May t be loaded straight into place?  Only if none of its rows of the
 * range exist here, this server has all its columns, no row-level security
 * applies, and every pulled table it references is already in place.
 */
static bool
CanLoadDirectly(Pull *pull, PullTable *t, List *fkeys)
{
	ListCell   *lc;
	int			i;

	for (i = 0; i < t->at.ncolumns; i++)
		if (!t->local[i])
			return false;
	if (check_enable_rls(t->relid, InvalidOid, true) == RLS_ENABLED)
		return false;
	foreach(lc, fkeys)
	{
		SyncForeignKey *fk = lfirst(lc);
		PullTable  *parent = &pull->tables[fk->parent];

		if (&pull->tables[fk->child] == t && parent != t &&
			!parent->unchanged && !parent->direct)
			return false;
	}
	return !HasRowsInRange(pull, t);
}

/*
 * Load the archive's rows of t into a new staging table.
 */
static void
StageTable(Pull *pull, PullTable *t, SyncLoader *loader, int position)
{
	StringInfoData sql;
	Oid			stage_relid;
	int			i;

	t->stage = psprintf("pg_temp.sync_pull_stage_%d", position);
	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TEMP TABLE %s (", strchr(t->stage, '.') + 1);
	for (i = 0; i < t->at.ncolumns; i++)
	{
		char	   *type = "text";

		if (t->local[i])
		{
			AttrNumber	attnum = get_attnum(t->relid, t->at.columns[i].name);
			Oid			typid;
			int32		typmod;
			Oid			collid;

			get_atttypetypmodcoll(t->relid, attnum, &typid, &typmod, &collid);
			type = format_type_with_typemod(typid, typmod);
		}
		appendStringInfo(&sql, "%s%s %s", i ? ", " : "",
						 quote_identifier(t->at.columns[i].name), type);
	}
	appendStringInfo(&sql, ", PRIMARY KEY (%s)) ON COMMIT DROP", quote_identifier(t->at.key));
	SyncExecute(sql.data, 0, NULL, NULL, NULL);
	stage_relid = RangeVarGetRelid(makeRangeVar("pg_temp", strchr(t->stage, '.') + 1, -1),
								   NoLock, false);
	(void) SyncLoad(loader, t->at.dir, t->at.qualname, stage_relid,
					LocalColumnNames(t, true), t->rows);
	SyncExecute(psprintf("ANALYZE %s", t->stage), 0, NULL, NULL, NULL);
}

/*
 * Is column of t written in a second step, because it references a table
 * applied after t (a reference cycle)?
 */
static bool
IsBackColumn(Pull *pull, List *fkeys, int *order_pos, int ti, const char *column)
{
	ListCell   *lc;

	foreach(lc, fkeys)
	{
		SyncForeignKey *fk = lfirst(lc);
		ListCell   *c;

		/* a deferrable reference is checked at the end instead */
		if (fk->child != ti || fk->parent == ti || fk->deferrable ||
			!pull->tables[fk->parent].stage ||
			order_pos[fk->parent] < order_pos[ti])
			continue;
		foreach(c, fk->columns)
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

/* The columns an UPDATE from a staging table sets (quoted names). */
typedef struct UpdateColumns
{
	StringInfoData set;			/* c = s.c, ... */
	StringInfoData old_row;		/* t.c, ... */
	StringInfoData new_row;		/* s.c, ... */
} UpdateColumns;

static void
InitUpdateColumns(UpdateColumns *u)
{
	initStringInfo(&u->set);
	initStringInfo(&u->old_row);
	initStringInfo(&u->new_row);
}

static void
AddUpdateColumn(UpdateColumns *u, const char *c)
{
	appendStringInfo(&u->set, "%s%s = s.%s", u->set.len ? ", " : "", c, c);
	appendStringInfo(&u->old_row, "%st.%s", u->old_row.len ? ", " : "", c);
	appendStringInfo(&u->new_row, "%ss.%s", u->new_row.len ? ", " : "", c);
}

/*
 * Update the rows of t (of the pulled range) whose columns u differ from
 * the staged ones; returns how many.  Rows differ if their images differ:
 * a value that is equal but not the same (1.5 and 1.50, '1 day' and
 * '24:00:00') is written too, so that the copy becomes exactly what the
 * publisher has.
 */
static int64
UpdateChangedRows(Pull *pull, PullTable *t, UpdateColumns *u)
{
	const char *key = quote_identifier(t->at.key);
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(pull->range.start), Int64GetDatum(pull->range.end)};

	return SyncExecute(psprintf("UPDATE %s t SET %s FROM %s s"
								" WHERE t.%s = s.%s AND t.%s BETWEEN $1 AND $2"
								"   AND pg_catalog.record_image_ne(ROW(%s), ROW(%s))",
								t->from, u->set.data, t->stage, key, key, key,
								u->old_row.data, u->new_row.data),
					   2, argtypes, values, NULL);
}

/*
 * Insert the staged rows that are new, then update the rows that differ;
 * back columns (references into a cycle) are left out: see ApplyBackColumns.
 */
static void
MergeTable(Pull *pull, List *fkeys, int *order_pos, int ti)
{
	PullTable  *t = &pull->tables[ti];
	StringInfoData cols;
	StringInfoData vals;
	UpdateColumns update;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(pull->range.start), Int64GetDatum(pull->range.end)};
	const char *key = quote_identifier(t->at.key);
	int			i;

	initStringInfo(&cols);
	initStringInfo(&vals);
	InitUpdateColumns(&update);
	for (i = 0; i < t->at.ncolumns; i++)
	{
		const char *c;
		bool		back;

		if (!t->local[i])
			continue;
		c = quote_identifier(t->at.columns[i].name);
		back = IsBackColumn(pull, fkeys, order_pos, ti, t->at.columns[i].name);
		if (back && AttNotNull(t->relid, t->at.columns[i].name))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot apply the reference cycle through column \"%s\" of table %s",
							t->at.columns[i].name, t->at.qualname),
					 errdetail("Rows of a reference cycle are inserted with the cycle's references empty, then completed; the column is NOT NULL."),
					 errhint("Allow NULL in the column, or make its foreign key DEFERRABLE.")));
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", c);
		appendStringInfo(&vals, "%s%s%s", vals.len ? ", " : "", back ? "NULL AS " : "s.", c);
		if (strcmp(t->at.columns[i].name, t->at.key) != 0 && !back)
			AddUpdateColumn(&update, c);
	}

	SyncReportProgress(pull->machine_id, "inserting", t->at.qualname, 0, 0);
	t->inserted += SyncExecute(psprintf("INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s s"
										" WHERE s.%s BETWEEN $1 AND $2"
										"   AND NOT EXISTS (SELECT 1 FROM %s t WHERE t.%s = s.%s)",
										t->at.qualname, cols.data, vals.data, t->stage,
										key, t->from, key, key),
							   2, argtypes, values, NULL);
	if (update.set.len > 0)
	{
		CheckReach(pull, ti, true);
		SyncReportProgress(pull->machine_id, "updating", t->at.qualname, 0, t->inserted);
		t->updated += UpdateChangedRows(pull, t, &update);
	}
}

/*
 * Second step for a table in a reference cycle: set its back columns, now
 * that every table of the cycle has its rows.  A row counts as updated only
 * if it existed before this pull.
 */
static void
ApplyBackColumns(Pull *pull, List *fkeys, int *order_pos, int ti)
{
	PullTable  *t = &pull->tables[ti];
	UpdateColumns update;
	int			i;

	InitUpdateColumns(&update);
	for (i = 0; i < t->at.ncolumns; i++)
		if (t->local[i] && IsBackColumn(pull, fkeys, order_pos, ti, t->at.columns[i].name))
			AddUpdateColumn(&update, quote_identifier(t->at.columns[i].name));
	if (update.set.len > 0)
		(void) UpdateChangedRows(pull, t, &update);
}

/*
 * SQL condition: row alias of table t is one this pull deletes (of the
 * pulled range, and not in the archive).
 */
static char *
DeletedRowsSql(Pull *pull, PullTable *t, const char *alias)
{
	const char *key = quote_identifier(t->at.key);

	return psprintf("(%s.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
					" AND NOT EXISTS (SELECT 1 FROM %s s WHERE s.%s = %s.%s))",
					alias, key, pull->range.start, pull->range.end,
					t->stage, key, alias, key);
}

/* The pulled table that is relid here, or NULL. */
static PullTable *
PulledTable(Pull *pull, Oid relid)
{
	int			i;

	for (i = 0; i < pull->ntables; i++)
		if (OidIsValid(relid) && pull->tables[i].relid == relid)
			return &pull->tables[i];
	return NULL;
}

/*
 * SQL naming a row of relid (alias c) in a message: its single-column
 * primary key, else its ctid.
 */
static char *
RowNameSql(Oid relid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	if (SyncExecute("SELECT a.attname FROM pg_catalog.pg_index i"
					"  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
					" WHERE i.indrelid = $1 AND i.indisprimary AND i.indnkeyatts = 1",
					1, argtypes, values, NULL) > 0)
		return psprintf("c.%s::text", quote_identifier(SyncGetText(0, 1)));
	return "c.ctid::text";
}

/*
 * The referenced columns of ref that a merge of t may change (in the
 * archive, here, not the key), as row constructors of old (alias p) and
 * new (alias s) values; false if there are none.
 */
static bool
ChangingColumns(PullTable *t, SyncReference *ref, StringInfo old_row,
				StringInfo new_row)
{
	ListCell   *lc;
	int			i;

	foreach(lc, ref->columns)
	{
		const char *column = lfirst(lc);

		for (i = 0; i < t->at.ncolumns; i++)
			if (t->local[i] && strcmp(t->at.columns[i].name, column) == 0 &&
				strcmp(column, t->at.key) != 0)
			{
				appendStringInfo(old_row, "%sp.%s", old_row->len ? ", " : "",
								 quote_identifier(column));
				appendStringInfo(new_row, "%ss.%s", new_row->len ? ", " : "",
								 quote_identifier(column));
			}
	}
	return old_row->len > 0;
}

/*
 * SQL finding (five of) the rows that reference t through ref and that a
 * deletion (or with for_update, a change of the referenced values) of rows
 * of t would reach, though this pull must not change them: their names,
 * and the keys of the rows of t they reference.  NULL: nothing can be
 * reached.
 */
static char *
ReachSql(Pull *pull, PullTable *t, SyncReference *ref, bool for_update)
{
	PullTable  *child = PulledTable(pull, ref->child);
	const char *key = quote_identifier(t->at.key);
	char	   *cname = SyncRelationName(ref->child);
	const char *cfrom;
	const char *spared;
	StringInfoData old_row;
	StringInfoData new_row;

	initStringInfo(&old_row);
	initStringInfo(&new_row);
	if (for_update && !ChangingColumns(t, ref, &old_row, &new_row))
		return NULL;
	cfrom = (get_rel_relkind(ref->child) == RELKIND_RELATION) ?
		psprintf("ONLY %s", cname) : cname;

	/* the referencing rows this pull may change itself */
	if (child && for_update)
		spared = psprintf("(c.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT ")",
						  quote_identifier(child->at.key), pull->range.start, pull->range.end);
	else if (child && child->stage)
		spared = DeletedRowsSql(pull, child, "c");
	else
		spared = "false";

	if (!for_update)
		return psprintf("SELECT %s, p.%s FROM %s c JOIN %s p ON %s"
						" WHERE %s AND NOT %s LIMIT 5",
						RowNameSql(ref->child), key, cfrom, t->from, ref->join_sql,
						DeletedRowsSql(pull, t, "p"), spared);
	return psprintf("SELECT %s, p.%s FROM %s c JOIN %s p ON %s"
					" JOIN %s s ON s.%s = p.%s"
					" WHERE p.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
					"   AND pg_catalog.record_image_ne(ROW(%s), ROW(%s)) AND NOT %s LIMIT 5",
					RowNameSql(ref->child), key, cfrom, t->from, ref->join_sql,
					t->stage, key, key,
					key, pull->range.start, pull->range.end,
					old_row.data, new_row.data, spared);
}

/* Report the rows ReachSql found. */
static void
ReportReach(Pull *pull, PullTable *t, SyncReference *ref, bool for_update)
{
	char	   *cname = SyncRelationName(ref->child);
	StringInfoData ckeys;
	StringInfoData tkeys;
	StringInfoData columns;
	ListCell   *lc;
	uint64		k;

	initStringInfo(&ckeys);
	initStringInfo(&tkeys);
	initStringInfo(&columns);
	for (k = 0; k < SPI_processed; k++)
	{
		appendStringInfo(&ckeys, "%s%s", k ? ", " : "", SyncGetText(k, 1));
		appendStringInfo(&tkeys, "%s%s", k ? ", " : "", SyncGetText(k, 2));
	}
	foreach(lc, ref->columns)
		appendStringInfo(&columns, "%s%s", columns.len ? ", " : "",
						 quote_identifier(lfirst(lc)));
	if (for_update)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("pull of machine " INT64_FORMAT " would change values of table %s that rows of table %s reference",
						pull->machine_id, t->at.qualname, cname),
				 errdetail("Rows of %s (%s) reference columns %s of rows of %s (keys %s) that machine " INT64_FORMAT " changes; the change would reach rows this pull must not change. Nothing was applied.",
						   cname, ckeys.data, columns.data, t->at.qualname, tkeys.data,
						   pull->machine_id),
				 errhint("Change the referencing rows first, then pull again.")));
	ereport(ERROR,
			(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
			 errmsg("pull of machine " INT64_FORMAT " would delete rows of table %s that rows of table %s still reference",
					pull->machine_id, t->at.qualname, cname),
			 errdetail("Rows of %s (%s) reference rows of %s (keys %s) that machine " INT64_FORMAT " no longer publishes; deleting them would reach rows this pull must not change. Nothing was applied.",
					   cname, ckeys.data, t->at.qualname, tkeys.data, pull->machine_id),
			 errhint("Change or delete the referencing rows first, then pull again.")));
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
	List	   *refs = SyncReferencesTo(t->relid);
	ListCell   *lc;
	int			save_nestlevel;

	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("row_security", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	foreach(lc, refs)
	{
		SyncReference *ref = lfirst(lc);
		char	   *sql = ReachSql(pull, t, ref, for_update);

		if (sql && SyncExecute(sql, 0, NULL, NULL, NULL) > 0)
			ReportReach(pull, t, ref, for_update);
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
	SyncReportProgress(pull->machine_id, "deleting", t->at.qualname, 0, 0);
	t->deleted += SyncExecute(psprintf("DELETE FROM %s t WHERE %s",
									   t->from, DeletedRowsSql(pull, t, "t")),
							  0, NULL, NULL, NULL);
}

/*
 * Before a table of a reference cycle loses rows, empty their back columns:
 * the rows they reference may go first.
 */
static void
ClearBackColumns(Pull *pull, List *fkeys, int *order_pos, int ti)
{
	PullTable  *t = &pull->tables[ti];
	StringInfoData set;
	int			i;

	initStringInfo(&set);
	for (i = 0; i < t->at.ncolumns; i++)
		if (t->local[i] && IsBackColumn(pull, fkeys, order_pos, ti, t->at.columns[i].name))
			appendStringInfo(&set, "%s%s = NULL", set.len ? ", " : "",
							 quote_identifier(t->at.columns[i].name));
	if (set.len > 0)
		(void) SyncExecute(psprintf("UPDATE %s t SET %s WHERE %s",
									t->from, set.data, DeletedRowsSql(pull, t, "t")),
						   0, NULL, NULL, NULL);
}

/*
 * Order the staged tables parents first (reference cycles in archive
 * order); order_pos[i] is table i's place, -1 for tables not staged.
 */
static int *
StagedOrder(Pull *pull, List *fkeys, int **order_pos)
{
	bool	   *staged = palloc0(sizeof(bool) * (pull->ntables + 1));
	int		   *order;
	int			i;

	for (i = 0; i < pull->ntables; i++)
		staged[i] = (pull->tables[i].stage != NULL);
	order = SyncParentsFirst(pull->ntables, fkeys, staged);
	*order_pos = palloc(sizeof(int) * (pull->ntables + 1));
	for (i = 0; i < pull->ntables; i++)
		(*order_pos)[i] = -1;
	for (i = 0; order[i] >= 0; i++)
		(*order_pos)[order[i]] = i;
	return order;
}

/*
 * Merge the registry of the archive (registry.c says how), staged as text.
 */
static void
ApplyRegistry(Pull *pull, SyncLoader *loader)
{
	PullTable  *r = &pull->registry;
	StringInfoData sql;
	Oid			stage;
	int			i;

	for (i = 0; i < SYNC_REGISTRY_NCOLUMNS; i++)
	{
		const char *needed = sync_registry_columns[i][0];
		int			j;
		bool		found = false;

		for (j = 0; j < r->at.ncolumns; j++)
			if (strcmp(r->at.columns[j].name, needed) == 0)
				found = true;
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("registry in the archive of machine " INT64_FORMAT " lacks column \"%s\"",
							pull->machine_id, needed)));
	}

	initStringInfo(&sql);
	appendStringInfoString(&sql, "CREATE TEMP TABLE sync_pull_registry (");
	for (i = 0; i < r->at.ncolumns; i++)
		appendStringInfo(&sql, "%s%s text", i ? ", " : "", quote_identifier(r->at.columns[i].name));
	appendStringInfoString(&sql, ") ON COMMIT DROP");
	SyncExecute(sql.data, 0, NULL, NULL, NULL);
	stage = RangeVarGetRelid(makeRangeVar("pg_temp", "sync_pull_registry", -1), NoLock, false);
	r->local = palloc(sizeof(bool) * r->at.ncolumns);
	for (i = 0; i < r->at.ncolumns; i++)
		r->local[i] = true;
	(void) SyncLoad(loader, r->at.dir, r->at.qualname, stage,
					LocalColumnNames(r, true), r->rows);

	SyncMergeRegistry("pg_temp.sync_pull_registry", pull->machine_id,
					  pull->machine_id == (int64) sync_registry_authority);
	SyncExecute("DROP TABLE pg_temp.sync_pull_registry", 0, NULL, NULL, NULL);
}

/*
 * Read the archive's data, in archive order: merge the registry, load each
 * table that may be loaded straight into place, stage the others.  Tables
 * not registered here, and those unchanged since the last pull, are
 * skipped.
 */
static void
LoadTables(Pull *pull, List *fkeys)
{
	SyncLoader	loader;
	char	   *name;
	int			i;

	SyncLoaderOpen(&loader, pull->archive_path, pull->machine_id, pull->encoding);
	while (SyncLoaderNext(&loader, &name))
	{
		PullTable  *t = NULL;

		if (SyncMemberOf(name, pull->registry.at.dir))
		{
			SyncReportProgress(pull->machine_id, "registry", NULL, 0, 0);
			ApplyRegistry(pull, &loader);
			continue;
		}
		for (i = 0; i < pull->ntables && t == NULL; i++)
			if (SyncMemberOf(name, pull->tables[i].at.dir))
				t = &pull->tables[i];
		if (t == NULL || !OidIsValid(t->relid) || t->unchanged)
			continue;			/* skipped; its other files too */

		if (CanLoadDirectly(pull, t, fkeys))
		{
			if (pg_class_aclcheck(t->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
				aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(t->relid));
			t->direct = true;
			SyncReportProgress(pull->machine_id, "loading", t->at.qualname, 0, 0);
			t->inserted += SyncLoad(&loader, t->at.dir, t->at.qualname, t->relid,
									LocalColumnNames(t, false), t->rows);
		}
		else
		{
			SyncReportProgress(pull->machine_id, "staging", t->at.qualname, 0, 0);
			StageTable(pull, t, &loader, (int) (t - pull->tables) + 1);
		}
	}
	SyncLoaderClose(&loader);
}

/*
 * Apply a verified archive.  The caller is connected to SPI.
 */
void
SyncApplyArchive(Pull *pull)
{
	List	   *fkeys;
	ListCell   *lc;
	int		   *order;
	int		   *order_pos;
	int			save_nestlevel;
	int			i;

	/*
	 * While rows are applied, local triggers and defaults see the caller's
	 * search_path (behind pg_catalog) and time zone; COPY reads the
	 * publisher's formats.
	 */
	save_nestlevel = SyncPinInputSettings(pull->session_path);

	for (i = 0; i < pull->ntables; i++)
		MapTable(pull, &pull->tables[i]);
	fkeys = PulledForeignKeys(pull);
	LoadTables(pull, fkeys);

	/* merge staged tables parents first, then delete children first */
	order = StagedOrder(pull, fkeys, &order_pos);

	/* deferrable references of a cycle are checked once all is in */
	foreach(lc, fkeys)
	{
		SyncForeignKey *fk = lfirst(lc);

		if (fk->deferrable && fk->parent != fk->child &&
			pull->tables[fk->parent].stage && pull->tables[fk->child].stage &&
			order_pos[fk->parent] > order_pos[fk->child])
			SyncExecute(psprintf("SET CONSTRAINTS %s DEFERRED", fk->name),
						0, NULL, NULL, NULL);
	}
	for (i = 0; order[i] >= 0; i++)
		MergeTable(pull, fkeys, order_pos, order[i]);
	for (i = 0; order[i] >= 0; i++)
		ApplyBackColumns(pull, fkeys, order_pos, order[i]);
	for (i = 0; order[i] >= 0; i++)
		ClearBackColumns(pull, fkeys, order_pos, order[i]);
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
