/*-------------------------------------------------------------------------
 *
 * apply.c
 *		Merging a verified archive into the local tables, in one transaction.
 *
 * Tables arrive parents first (by foreign keys and declared dependencies).
 * A table whose rows of the pulled machine's range are all new here (the
 * first pull) is loaded straight into place with COPY (load.c), when every
 * table it needs is already in place and no unique constraint beyond its
 * key could meet another machine's row.  Any other table is loaded into a
 * temporary staging table and merged (merge.c): new rows inserted, changed
 * rows updated (identical rows are not written at all), rows the machine
 * no longer publishes deleted.  Every statement is checked against its
 * plan, so a trigger or rule that changes what a statement does fails the
 * pull instead of leaving a copy that differs from its owner's.
 *
 * The order of a merge:
 *	 1. rows no longer published that nothing references are deleted,
 *		children first (when unique constraints are about: their values are
 *		then free for the rows that take them over);
 *	 2. per table, parents first: conflicts over unique values settled
 *		(conflict.c), new rows inserted, changed rows updated;
 *	 3. reference cycles completed (back columns), then the other rows no
 *		longer published deleted, children first.
 * Only rows of the pulled machine's range are ever touched; a deletion or
 * change that would reach another row fails the pull (reach.c).  No trigger
 * is disabled: every foreign key is checked as usual.
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
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "apply.h"
#include "digest.h"
#include "fkeys.h"
#include "keys.h"
#include "load.h"
#include "progress.h"
#include "reach.h"
#include "registry.h"
#include "settings.h"
#include "tables.h"

/* a table loaded straight into place with this many rows is analyzed */
#define SYNC_ANALYZE_ROWS 10000

/* the most rounds in which unique values moving along a chain are written */
#define SYNC_MAX_ROUNDS 100

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
AddWarning(Pull *pull, const char *msg, const char *detail, const char *hint)
{
	MemoryContext oldcxt;
	ListCell   *lc;

	/* a pull of several archives says it once */
	foreach(lc, pull->warnings)
		if (strcmp(lfirst(lc), msg) == 0)
			return;
	ereport(WARNING,
			(errmsg("%s", msg),
			 detail ? errdetail("%s", detail) : 0,
			 errhint("%s", hint)));
	oldcxt = MemoryContextSwitchTo(pull->cxt);
	pull->warnings = lappend(pull->warnings, pstrdup(msg));
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Find the registered table for an archive table, and match its key and
 * columns.
 */
static void
MapTable(Pull *pull, PullTable *t)
{
	Oid			nsp = get_namespace_oid(t->at.schema, true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(t->at.name, nsp) : InvalidOid;
	SyncRegisteredTable reg;
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	key;
	StringInfoData missing;
	int			nmissing = 0;
	int			i;

	t->local = palloc0(sizeof(bool) * t->at.ncolumns);
	if (!SyncLookupRegistration(relid, &reg))
	{
		AddWarning(pull, psprintf("table %s of machine " INT64_FORMAT " is not registered here; its rows were skipped",
								  t->at.qualname, pull->machine_id),
				   NULL, "Register it with sync_add_table() to receive its rows.");
		t->relid = InvalidOid;
		return;
	}
	if ((pull->only != NIL && !list_member_oid(pull->only, relid)) ||
		list_member_oid(pull->leave_out, relid))
	{
		/* left out of this pull, as asked: CheckSubset checks the rest */
		t->relid = InvalidOid;
		t->left_out = relid;
		return;
	}
	t->relid = relid;

	rel = table_open(relid, AccessShareLock);
	/* rows of tables inheriting from it are not its */
	t->from = (rel->rd_rel->relkind == RELKIND_RELATION) ?
		psprintf("ONLY %s", t->at.qualname) : t->at.qualname;
	desc = RelationGetDescr(rel);
	key = SyncRegisteredKey(rel, &reg);
	if (strcmp(NameStr(TupleDescAttr(desc, key - 1)->attname), t->at.key) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("key of table %s is \"%s\" here but \"%s\" in the archive of machine " INT64_FORMAT,
						t->at.qualname, NameStr(TupleDescAttr(desc, key - 1)->attname), t->at.key,
						pull->machine_id),
				 errhint("Rows are matched by key: the key columns must have the same name on both servers.")));
	t->key_unchecked = !SyncKeyIsUnique(rel, key);
	t->mt.keyed = !t->key_unchecked;
	t->skip_conflicts = reg.skip_conflicts;
	t->uniques = SyncUniquesOf(relid, key);

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
				   NULL, "Add the column(s) here to receive their values.");
	t->complete = (nmissing == 0);

	t->mt.machine_id = pull->machine_id;
	t->mt.range = pull->range;
	t->mt.relid = relid;
	t->mt.qualname = t->at.qualname;
	t->mt.from = t->from;
	t->mt.key = quote_identifier(t->at.key);
}

/*
 * What orders the pulled tables registered here: their foreign keys and
 * declared dependencies, by the local catalog and registrations.
 */
static List *
PulledDependencies(Pull *pull)
{
	Oid		   *relids = palloc(sizeof(Oid) * (pull->ntables + 1));
	int			i;

	for (i = 0; i < pull->ntables; i++)
		relids[i] = pull->tables[i].relid;
	return SyncTableDependencies(relids, pull->ntables);
}

/*
 * A pull of some tables only must take every registered table they
 * reference, by foreign key or depends_on: rows whose parents are not
 * pulled could miss them (leaving out a table's children is fine: a
 * parent deleted at the publisher has no children left there either).
 * And every table asked for must be one the machine publishes.
 */
static void
CheckSubset(Pull *pull)
{
	Oid		   *relids;
	ListCell   *lc;
	int			i;

	if (pull->only == NIL && pull->leave_out == NIL)
		return;
	relids = palloc(sizeof(Oid) * (pull->ntables + 1));
	for (i = 0; i < pull->ntables; i++)
		relids[i] = OidIsValid(pull->tables[i].relid) ? pull->tables[i].relid :
			pull->tables[i].left_out;
	foreach(lc, SyncTableDependencies(relids, pull->ntables))
	{
		SyncForeignKey *dep = lfirst(lc);
		PullTable  *child = &pull->tables[dep->child];
		PullTable  *parent = &pull->tables[dep->parent];

		if (OidIsValid(child->relid) && OidIsValid(parent->left_out))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("table %s cannot be pulled without table %s, which it references",
							child->at.qualname, parent->at.qualname),
					 errdetail("A pull of some tables takes every registered table they reference, so that each row pulled finds the rows it references."),
					 errhint("Pull %s too, or leave %s out as well.",
							 parent->at.qualname, child->at.qualname)));
	}
	foreach(lc, pull->only)
	{
		Oid			relid = lfirst_oid(lc);

		for (i = 0; i < pull->ntables; i++)
			if (pull->tables[i].relid == relid)
				break;
		if (i == pull->ntables)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("machine " INT64_FORMAT " publishes no table %s",
							pull->machine_id, SyncRelationName(relid)),
					 errhint("A machine publishes the tables registered there; its manifest lists them.")));
	}
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
 * applies, no unique constraint beyond its key could meet another machine's
 * row (found only when staged), and every pulled table it needs is already
 * in place.
 */
static bool
CanLoadDirectly(Pull *pull, PullTable *t, List *deps)
{
	ListCell   *lc;
	int			i;

	if (pull->verify || pull->delta || pull->folds != NIL)
		return false;
	for (i = 0; i < t->at.ncolumns; i++)
		if (!t->local[i])
			return false;
	if (t->uniques != NIL)
		return false;
	if (check_enable_rls(t->relid, InvalidOid, true) == RLS_ENABLED)
		return false;
	foreach(lc, deps)
	{
		SyncForeignKey *dep = lfirst(lc);
		PullTable  *parent = &pull->tables[dep->parent];

		if (&pull->tables[dep->child] == t && parent != t &&
			!parent->unchanged && !parent->direct)
			return false;
	}
	return !HasRowsInRange(pull, t);
}

/*
 * COPY the archive's rows of t into its staging table; a key that occurs
 * twice fails the staging table's primary key, reported as the archive's
 * fault.
 */
static void
LoadStage(Pull *pull, PullTable *t, SyncLoader *loader)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		(void) SyncLoad(loader, t->at.dir, t->at.qualname, t->mt.stage_relid,
						LocalColumnNames(t, true), t->at.key, t->rows);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("archive of machine " INT64_FORMAT " has more than one row of table %s with the same key",
						pull->machine_id, t->at.qualname),
				 errdetail("%s Rows are matched by key; nothing was applied.",
						   edata->detail ? edata->detail : "")));
	}
	PG_END_TRY();
}

/*
 * Load the archive's rows of t into a new staging table.
 */
static void
StageTable(Pull *pull, PullTable *t, SyncLoader *loader, int position)
{
	StringInfoData sql;
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
	t->mt.stage = t->stage;
	t->mt.stage_relid = RangeVarGetRelid(makeRangeVar("pg_temp", strchr(t->stage, '.') + 1, -1),
										 NoLock, false);
	LoadStage(pull, t, loader);
	SyncExecute(psprintf("ANALYZE %s", t->stage), 0, NULL, NULL, NULL);
}

/*
 * Load the keys a delta deletes from t into a new staging table.
 */
static void
StageDeleted(Pull *pull, PullTable *t, SyncLoader *loader, int position)
{
	AttrNumber	attnum = get_attnum(t->relid, t->at.key);
	char	   *name = psprintf("sync_pull_deleted_%d", position);
	Oid			typid;
	int32		typmod;
	Oid			collid;

	get_atttypetypmodcoll(t->relid, attnum, &typid, &typmod, &collid);
	SyncExecute(psprintf("CREATE TEMP TABLE %s (%s %s PRIMARY KEY) ON COMMIT DROP",
						 name, quote_identifier(t->at.key), format_type_with_typemod(typid, typmod)),
				0, NULL, NULL, NULL);
	t->mt.deleted = psprintf("pg_temp.%s", name);
	(void) SyncLoad(loader, t->del->at.dir, t->at.qualname,
					RangeVarGetRelid(makeRangeVar("pg_temp", name, -1), NoLock, false),
					list_make1(makeString(t->at.key)), t->at.key, t->del->rows);
	/* few keys, as the planner must know: their rows are found by index */
	SyncExecute(psprintf("ANALYZE %s", t->mt.deleted), 0, NULL, NULL, NULL);
	/* a key a delta both has and deletes: which would it be? */
	if (SyncExecute(psprintf("SELECT 1 FROM %s d JOIN %s s ON s.%s = d.%s LIMIT 1",
							 t->mt.deleted, t->stage, quote_identifier(t->at.key),
							 quote_identifier(t->at.key)), 0, NULL, NULL, NULL) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("delta of machine " INT64_FORMAT " both has and deletes rows of table %s",
						pull->machine_id, t->at.qualname),
				 errdetail("A delta deletes only keys whose rows it does not have; nothing was applied.")));
}

/*
 * Prove that applying a delta to t leaves the copy here equal to what its
 * publisher published: the digest of the copy before it, less the hashes
 * of the rows here it replaces or deletes (rendered as a dump renders
 * them), plus those of its rows, must be the publisher's digest, and the
 * rows as many.  Only the rows the delta touches are read.
 */
static void
ProveTable(Pull *pull, PullTable *t)
{
	StringInfoData cols;
	const char *k = t->mt.key;
	uint64		old;
	int64		old_rows;
	uint64		digest;
	int64		rows;
	int			lookups;
	int			i;

	/* a table new to the chain: the copy here must have none of its rows */
	if (t->base_rows == SYNC_BASE_UNKNOWN)
		t->base_rows = HasRowsInRange(pull, t) ? -1 : 0;
	initStringInfo(&cols);
	for (i = 0; i < t->at.ncolumns; i++)
		appendStringInfo(&cols, "%sx.%s", i ? ", " : "", quote_identifier(t->at.columns[i].name));
	lookups = SyncBeginKeyLookups(&t->mt);
	SyncDigestQuery(psprintf("SELECT %s FROM (SELECT s.%s FROM %s s UNION SELECT d.%s FROM %s d) k"
							 " JOIN %s x ON x.%s = k.%s"
							 " WHERE x.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT,
							 cols.data, k, t->stage, k, t->mt.deleted,
							 t->from, k, k, k, pull->range.start, pull->range.end),
					&old, &old_rows);
	SyncEndKeyLookups(lookups);
	digest = t->base_digest - old + t->digest.sum;
	rows = t->base_rows - old_rows + t->digest.rows;
	if (digest != t->at.digest || rows != t->at.published)
	{
		pull->mismatch = MemoryContextStrdup(pull->cxt, t->at.qualname);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("copy of table %s differs from what machine " INT64_FORMAT " published",
						t->at.qualname, pull->machine_id),
				 errdetail("After the delta, the copy here would hold " INT64_FORMAT " rows of digest %016" INT64_MODIFIER "x; the publisher has " INT64_FORMAT " of digest %016" INT64_MODIFIER "x.",
						   rows, digest, t->at.published, t->at.digest)));
	}
}

/*
 * Is column of t written in a second step, because it references a table
 * applied after t (a reference cycle)?
 */
static bool
IsBackColumn(Pull *pull, List *deps, int *order_pos, int ti, const char *column)
{
	ListCell   *lc;

	foreach(lc, deps)
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

/* The columns an UPDATE from a staging table sets. */
typedef struct UpdateColumns
{
	StringInfoData set;			/* c = p.c, ... (p: the planned row) */
	StringInfoData old_row;		/* x.c, ... (x: the row here) */
	StringInfoData new_row;		/* s.c, ... (s: the staged row) */
	List	   *names;			/* plain column names */
} UpdateColumns;

static void
InitUpdateColumns(UpdateColumns *u)
{
	initStringInfo(&u->set);
	initStringInfo(&u->old_row);
	initStringInfo(&u->new_row);
	u->names = NIL;
}

static void
AddUpdateColumn(UpdateColumns *u, const char *column)
{
	const char *c = quote_identifier(column);

	appendStringInfo(&u->set, "%s%s = p.%s", u->set.len ? ", " : "", c, c);
	appendStringInfo(&u->old_row, "%sx.%s", u->old_row.len ? ", " : "", c);
	appendStringInfo(&u->new_row, "%ss.%s", u->new_row.len ? ", " : "", c);
	u->names = lappend(u->names, (char *) column);
}

/* Every pulled table's merge target, for the reach checks. */
static const SyncMergeTarget **
PulledTargets(Pull *pull)
{
	const SyncMergeTarget **targets = palloc(sizeof(SyncMergeTarget *) * (pull->ntables + 1));
	int			i;

	for (i = 0; i < pull->ntables; i++)
		targets[i] = &pull->tables[i].mt;
	return targets;
}

/*
 * Insert the staged rows that are new, then update the rows that differ;
 * back columns (references into a cycle) are left out: see ApplyBackColumns.
 * With moves (unique values that move between the machine's rows), rows
 * are first written in rounds, each writing the rows whose values are free
 * by then; what a cycle still holds is then set aside.
 */
static void
MergeTable(Pull *pull, List *deps, int *order_pos, int ti, bool moves)
{
	PullTable  *t = &pull->tables[ti];
	StringInfoData cols;
	StringInfoData vals;
	UpdateColumns update;
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
		back = IsBackColumn(pull, deps, order_pos, ti, t->at.columns[i].name);
		if (back && AttNotNull(t->relid, t->at.columns[i].name))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot apply the reference cycle through column \"%s\" of table %s",
							t->at.columns[i].name, t->at.qualname),
					 errdetail("Rows of a reference cycle are inserted with the cycle's references empty, then completed; the column is NOT NULL."),
					 errhint("Allow NULL in the column, or make its foreign key DEFERRABLE.")));
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "", c);
		appendStringInfo(&vals, "%s%s%s", vals.len ? ", " : "", back ? "NULL" : "p.", back ? "" : c);
		if (strcmp(t->at.columns[i].name, t->at.key) != 0 && !back)
			AddUpdateColumn(&update, t->at.columns[i].name);
	}

	if (update.names != NIL)
		SyncCheckReach(&t->mt, PulledTargets(pull), pull->ntables, update.names, NULL);
	if (moves)
	{
		char	   *free_values = SyncFreeValuesSql(&t->mt, t->uniques, "s");
		char	   *moving = psprintf("%s AND %s", free_values,
									  SyncMovingValuesSql(&t->mt, t->uniques, "x", "s"));
		int64		written;
		int			round = 0;

		/* a round writes only rows whose unique values are new or move */
		do
		{
			CHECK_FOR_INTERRUPTS();
			if (++round > SYNC_MAX_ROUNDS)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("unique values of table %s from machine " INT64_FORMAT " move along a chain of more than %d rows",
								t->at.qualname, pull->machine_id, SYNC_MAX_ROUNDS),
						 errdetail("Each round writes the rows whose values are free; a value that comes free only after so many rounds is not waited for."),
						 errhint("Make the unique constraints of the table DEFERRABLE: values then move in any order.")));
			written = SyncMergeInsert(&t->mt, cols.data, vals.data, free_values);
			t->inserted += written;
			if (update.names != NIL)
			{
				int64		updated = SyncMergeUpdate(&t->mt, update.set.data, update.old_row.data,
													  update.new_row.data, moving);

				t->updated += updated;
				written += updated;
			}
		} while (written > 0);
		SyncSetAsideMoves(&t->mt, t->uniques);
	}
	t->inserted += SyncMergeInsert(&t->mt, cols.data, vals.data, "true");
	if (update.names != NIL)
	{
		SyncProgressPhase("updating", t->at.qualname);
		t->updated += SyncMergeUpdate(&t->mt, update.set.data, update.old_row.data,
									  update.new_row.data, "true");
	}
}

/*
 * Second step for a table in a reference cycle: set its back columns, now
 * that every table of the cycle has its rows.  A row counts as updated only
 * if it existed before this pull.
 */
static void
ApplyBackColumns(Pull *pull, List *deps, int *order_pos, int ti)
{
	PullTable  *t = &pull->tables[ti];
	UpdateColumns update;
	int			i;

	InitUpdateColumns(&update);
	for (i = 0; i < t->at.ncolumns; i++)
		if (t->local[i] && IsBackColumn(pull, deps, order_pos, ti, t->at.columns[i].name))
			AddUpdateColumn(&update, t->at.columns[i].name);
	if (update.names != NIL)
		(void) SyncMergeUpdate(&t->mt, update.set.data, update.old_row.data,
							   update.new_row.data, "true");
}

/*
 * Before a table of a reference cycle loses rows, empty their back columns:
 * the rows they reference may go first.
 */
static void
ClearBackColumns(Pull *pull, List *deps, int *order_pos, int ti)
{
	PullTable  *t = &pull->tables[ti];
	StringInfoData set;
	int			i;

	initStringInfo(&set);
	for (i = 0; i < t->at.ncolumns; i++)
		if (t->local[i] && IsBackColumn(pull, deps, order_pos, ti, t->at.columns[i].name))
			appendStringInfo(&set, "%s%s = NULL", set.len ? ", " : "",
							 quote_identifier(t->at.columns[i].name));
	if (set.len > 0)
		(void) SyncMergeSet(&t->mt, "empty the cycle's references of", set.data,
							SyncDeletedRowsSql(&t->mt, "x"));
}

/*
 * Rows of t that incoming rows of its children left out (on_conflict)
 * still reference are kept until those rows are applied: t is then merged
 * again at the next pull.
 */
static void
KeepReferenced(Pull *pull, List *deps, int ti)
{
	PullTable  *t = &pull->tables[ti];
	ListCell   *lc;

	foreach(lc, deps)
	{
		SyncForeignKey *fk = lfirst(lc);
		PullTable  *child = &pull->tables[fk->child];
		SyncKeeper *keeper;

		if (fk->declared || fk->parent != ti || child->mt.skip == NULL)
			continue;
		keeper = palloc(sizeof(SyncKeeper));
		keeper->child = &child->mt;
		keeper->fk = fk;
		t->mt.keepers = lappend(t->mt.keepers, keeper);
		t->complete = false;
	}
}

/*
 * Delete t's rows of the range that the archive no longer has, once it is
 * sure that nothing reaches rows the pull must not change; in a reference
 * cycle, their back columns are emptied first (ClearBackColumns).
 */
static void
DeleteMissing(Pull *pull, int ti)
{
	PullTable  *t = &pull->tables[ti];
	int64		rows;
	char	   *doomed = SyncDoom(&t->mt, SyncDeletedRowsSql(&t->mt, "x"),
								  psprintf("sync_pull_doomed_%d", ti + 1), &rows);

	SyncCheckReach(&t->mt, PulledTargets(pull), pull->ntables, NIL, doomed);
	t->deleted += SyncMergeDelete(&t->mt, doomed);
}

/*
 * Delete at once t's rows of the range that the archive no longer has and
 * that no row references (rows reaching them would be found with
 * row_security off), so that their unique values are free for the rows
 * that take them over.
 */
static void
DeleteUnreferenced(Pull *pull, int ti)
{
	PullTable  *t = &pull->tables[ti];
	int			save_nestlevel;
	int64		rows;
	char	   *doomed;

	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("row_security", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	doomed = SyncDoom(&t->mt, psprintf("%s AND NOT %s", SyncDeletedRowsSql(&t->mt, "x"),
									   SyncReferencedSql(&t->mt, "x")),
					  psprintf("sync_pull_unreferenced_%d", ti + 1), &rows);
	AtEOXact_GUC(true, save_nestlevel);
	t->deleted += SyncMergeDelete(&t->mt, doomed);
}

/*
 * Leave out the incoming rows of table ti that reference rows left out of
 * its parents (itself, with self).
 */
static void
SkipReferencing(Pull *pull, List *deps, int ti, bool self)
{
	PullTable  *t = &pull->tables[ti];
	ListCell   *lc;

	foreach(lc, deps)
	{
		SyncForeignKey *fk = lfirst(lc);
		PullTable  *parent = &pull->tables[fk->parent];
		ListCell   *c;
		bool		staged = true;

		if (fk->declared || fk->child != ti || parent->stage == NULL ||
			(fk->parent == ti) != self)
			continue;
		foreach(c, fk->columns)
			staged &= (get_attnum(t->mt.stage_relid, lfirst(c)) != InvalidAttrNumber);
		foreach(c, fk->parent_columns)
			staged &= (get_attnum(parent->mt.stage_relid, lfirst(c)) != InvalidAttrNumber);
		if (staged)
			SyncSkipReferencing(&t->mt, &parent->mt, fk, ti + 1);
	}
}

/*
 * Before t's rows are merged: leave out the incoming rows that reference
 * rows left out of its parents, settle the unique values they need, and
 * leave out those that reference rows of t left out meanwhile.  Returns
 * whether unique values move between the machine's rows of t.
 */
static bool
ResolveConflicts(Pull *pull, List *deps, int ti)
{
	PullTable  *t = &pull->tables[ti];
	int64		skipped;

	/* each row left out may keep others out: until nothing more is */
	do
	{
		CHECK_FOR_INTERRUPTS();
		skipped = SyncSkipCount(&t->mt);
		SkipReferencing(pull, deps, ti, false);
		if (t->uniques != NIL)
			SyncSkipConflicts(&t->mt, t->uniques, t->skip_conflicts, ti + 1);
		SkipReferencing(pull, deps, ti, true);
	} while (SyncSkipCount(&t->mt) > skipped);
	return t->uniques != NIL && SyncValuesMove(&t->mt, t->uniques);
}

/*
 * Order the staged tables parents first (reference cycles in archive
 * order); order_pos[i] is table i's place, -1 for tables not staged.
 */
static int *
StagedOrder(Pull *pull, List *deps, int **order_pos)
{
	bool	   *staged = palloc0(sizeof(bool) * (pull->ntables + 1));
	int		   *order;
	int			i;

	for (i = 0; i < pull->ntables; i++)
		staged[i] = (pull->tables[i].stage != NULL);
	order = SyncParentsFirst(pull->ntables, deps, staged);
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

	r->local = palloc(sizeof(bool) * r->at.ncolumns);
	for (i = 0; i < r->at.ncolumns; i++)
		r->local[i] = true;
	(void) SyncLoadAsText(loader, r->at.dir, r->at.qualname,
						  LocalColumnNames(r, true), "sync_pull_registry", r->rows);

	SyncMergeRegistry("pg_temp.sync_pull_registry", pull->machine_id,
					  pull->machine_id == (int64) sync_registry_authority);
	SyncExecute("DROP TABLE pg_temp.sync_pull_registry", 0, NULL, NULL, NULL);
}

/*
 * Fold a verified delta that follows the full archive of pull into its
 * staging tables: the rows it has replace those of their keys, the keys it
 * deletes go.  Its tables are the full archive's, with the same columns (a
 * delta never follows a full archive of other columns).
 */
static void
FoldDelta(Pull *pull, Pull *delta)
{
	SyncLoader	loader;
	char	   *name;
	int			i;

	SyncLoaderOpen(&loader, delta->archive_path, delta->unpacked, pull->machine_id,
				   &pull->range);
	while (SyncLoaderNext(&loader, &name))
	{
		PullTable  *t = NULL;
		PullTable  *d = NULL;
		bool		deleted = false;
		Oid			relid;

		/* the registry of the newest state is the one merged */
		if (SyncMemberOf(name, delta->registry.at.dir))
		{
			if (!pull->verify && delta == llast(pull->folds))
				ApplyRegistry(delta, &loader);
			continue;
		}

		for (i = 0; i < delta->ntables && d == NULL; i++)
		{
			if (SyncMemberOf(name, delta->tables[i].at.dir))
				d = &delta->tables[i];
			else if (delta->tables[i].del && SyncMemberOf(name, delta->tables[i].del->at.dir))
			{
				d = &delta->tables[i];
				deleted = true;
			}
		}
		for (i = 0; d != NULL && i < pull->ntables && t == NULL; i++)
			if (strcmp(pull->tables[i].at.qualname, d->at.qualname) == 0)
				t = &pull->tables[i];
		if (t == NULL || t->stage == NULL)
			continue;			/* skipped; its other files too */
		SyncExecute(psprintf("CREATE TEMP TABLE sync_verify_delta (LIKE %s)", t->stage),
					0, NULL, NULL, NULL);
		relid = RangeVarGetRelid(makeRangeVar("pg_temp", "sync_verify_delta", -1), NoLock, false);
		if (deleted)
			(void) SyncLoad(&loader, d->del->at.dir, t->at.qualname, relid,
							list_make1(makeString(t->at.key)), t->at.key, d->del->rows);
		else
			(void) SyncLoad(&loader, d->at.dir, t->at.qualname, relid,
							LocalColumnNames(t, true), t->at.key, d->rows);
		SyncExecute(psprintf("DELETE FROM %s s USING pg_temp.sync_verify_delta d WHERE s.%s = d.%s",
							 t->stage, t->mt.key, t->mt.key), 0, NULL, NULL, NULL);
		if (!deleted)
			SyncExecute(psprintf("INSERT INTO %s SELECT * FROM pg_temp.sync_verify_delta", t->stage),
						0, NULL, NULL, NULL);
		SyncExecute("DROP TABLE pg_temp.sync_verify_delta", 0, NULL, NULL, NULL);
	}
	SyncLoaderClose(&loader);
}

/*
 * Read the archive's data, in archive order: merge the registry, load each
 * table that may be loaded straight into place, stage the others.  Tables
 * not registered here, and those unchanged since the last pull, are
 * skipped.
 */
static void
LoadTables(Pull *pull, List *deps)
{
	SyncLoader	loader;
	char	   *name;
	int			i;

	SyncLoaderOpen(&loader, pull->archive_path, pull->unpacked, pull->machine_id,
				   &pull->range);
	while (SyncLoaderNext(&loader, &name))
	{
		PullTable  *t = NULL;

		if (SyncMemberOf(name, pull->registry.at.dir))
		{
			/* compared: the tables only; folded: the newest registry wins */
			if (pull->verify || pull->folds != NIL)
				continue;
			SyncProgressPhase("registry", NULL);
			ApplyRegistry(pull, &loader);
			continue;
		}
		for (i = 0; i < pull->ntables && t == NULL; i++)
			if (pull->tables[i].del && SyncMemberOf(name, pull->tables[i].del->at.dir))
			{
				t = &pull->tables[i];
				if (OidIsValid(t->relid) && !t->unchanged)
					StageDeleted(pull, t, &loader, i + 1);
			}
		if (t != NULL)
			continue;
		for (i = 0; i < pull->ntables && t == NULL; i++)
			if (SyncMemberOf(name, pull->tables[i].at.dir))
				t = &pull->tables[i];
		if (t == NULL || !OidIsValid(t->relid) || t->unchanged)
			continue;			/* skipped; its other files too */

		if (CanLoadDirectly(pull, t, deps))
		{
			if (pg_class_aclcheck(t->relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
				aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, get_rel_name(t->relid));
			t->direct = true;
			SyncProgressPhase("loading", t->at.qualname);
			t->inserted += SyncLoad(&loader, t->at.dir, t->at.qualname, t->relid,
									LocalColumnNames(t, false), t->at.key, t->rows);

			/*
			 * Statistics of what was just loaded, as after a restore: the
			 * next pulls, which find rows by key, are planned on them.
			 */
			if (t->rows >= SYNC_ANALYZE_ROWS)
				(void) SyncExecuteAs(SyncRelationOwner(t->relid),
									 psprintf("ANALYZE %s", t->at.qualname), 0, NULL, NULL, NULL);
		}
		else
		{
			SyncProgressPhase("staging", t->at.qualname);
			StageTable(pull, t, &loader, (int) (t - pull->tables) + 1);
		}
	}
	SyncLoaderClose(&loader);
}

/*
 * Before anything is merged: row-level security must not hide rows of a
 * staged table from this role (they would be neither seen nor changed),
 * and a key that no index makes unique must be unique in the rows loaded
 * and in the copy here.
 */
static void
CheckTables(Pull *pull)
{
	int			i;

	for (i = 0; i < pull->ntables; i++)
	{
		PullTable  *t = &pull->tables[i];

		if (t->stage && check_enable_rls(t->relid, InvalidOid, true) == RLS_ENABLED)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("row-level security on table %s applies to role %s",
							t->at.qualname, GetUserNameFromId(GetUserId(), false)),
					 errdetail("Rows a policy hides from the role pulling would be neither updated nor deleted, and the copy of machine " INT64_FORMAT "'s rows would differ from what it published.",
							   pull->machine_id),
					 errhint("Pull as the table's owner or a role with BYPASSRLS, or disable row-level security on the table.")));
		if (t->key_unchecked && t->direct)
			SyncCheckUniqueKeys(&t->mt, "the archive",
								"Its publisher must give each of its rows a key of its own and dump again.");
		else if (t->key_unchecked && t->stage)
			SyncCheckUniqueKeys(&t->mt, "the copy here",
								"Delete the extra copies here, then pull again.");
	}
}

/*
 * Defer the deferrable foreign keys of reference cycles, and deferrable
 * unique constraints, to the end of the pull.
 */
static void
DeferConstraints(Pull *pull, List *deps, int *order_pos)
{
	ListCell   *lc;
	int			i;

	foreach(lc, deps)
	{
		SyncForeignKey *fk = lfirst(lc);

		if (fk->deferrable && fk->parent != fk->child &&
			pull->tables[fk->parent].stage && pull->tables[fk->child].stage &&
			order_pos[fk->parent] > order_pos[fk->child])
			SyncExecute(psprintf("SET CONSTRAINTS %s DEFERRED", fk->name),
						0, NULL, NULL, NULL);
	}
	for (i = 0; i < pull->ntables; i++)
		if (pull->tables[i].stage)
			SyncDeferUniques(pull->tables[i].uniques);
}

/*
 * After the merge: drop the staging tables, add up what was done, and say
 * which rows on_conflict left out.
 */
static void
Finish(Pull *pull)
{
	StringInfoData skipped;
	MemoryContext oldcxt;
	int			i;

	/* the log is written after SPI's memory is gone */
	oldcxt = MemoryContextSwitchTo(pull->cxt);
	initStringInfo(&skipped);
	MemoryContextSwitchTo(oldcxt);
	for (i = 0; i < pull->ntables; i++)
	{
		PullTable  *t = &pull->tables[i];

		if (t->stage && SyncSkippedRows(&t->mt, &t->skipped))
		{
			oldcxt = MemoryContextSwitchTo(pull->cxt);
			appendStringInfoString(&skipped, skipped.len ? ", " : "{");
			escape_json(&skipped, t->at.qualname);
			appendStringInfo(&skipped, ": {\"rows\": " INT64_FORMAT ", \"keys\": ", t->skipped.rows);
			escape_json(&skipped, t->skipped.keys);
			appendStringInfoChar(&skipped, '}');
			MemoryContextSwitchTo(oldcxt);
			pull->skipped += t->skipped.rows;
			t->complete = false;	/* tried again at the next pull */
			AddWarning(pull, psprintf("%s of table %s from machine " INT64_FORMAT " left out: %s",
									  t->skipped.rows == 1 ? "1 row" : psprintf(INT64_FORMAT " rows", t->skipped.rows),
									  t->at.qualname, pull->machine_id,
									  t->skipped.rows == 1 ?
									  "it holds unique values of other machines' rows, or references a row that does" :
									  "they hold unique values of other machines' rows, or reference rows that do"),
					   psprintf("Keys %s%s.", t->skipped.keys,
								t->skipped.rows > 5 ? ", ..." : ""),
					   "They arrive at a later pull, once the conflict is resolved on one of the machines.");
		}
		if (t->stage)
			SyncExecute(psprintf("DROP TABLE %s", t->stage), 0, NULL, NULL, NULL);
		if (t->mt.skip)
			SyncExecute(psprintf("DROP TABLE %s", t->mt.skip), 0, NULL, NULL, NULL);
		if (t->mt.deleted)
			SyncExecute(psprintf("DROP TABLE %s", t->mt.deleted), 0, NULL, NULL, NULL);
		pull->inserted += t->inserted;
		pull->updated += t->updated;
		pull->deleted += t->deleted;
	}
	if (skipped.len > 0)
	{
		appendStringInfoChar(&skipped, '}');
		pull->skipped_json = skipped.data;
	}
}

/*
 * Apply a verified archive.  The caller is connected to SPI.
 */
void
SyncApplyArchive(Pull *pull)
{
	List	   *deps;
	int		   *order;
	int		   *order_pos;
	bool		uniques = false;
	int			save_nestlevel;
	ListCell   *lc;
	int			i;

	/*
	 * While rows are applied, local triggers and defaults see the caller's
	 * search_path (behind pg_catalog) and time zone; COPY reads the
	 * publisher's formats.
	 */
	save_nestlevel = SyncPinInputSettings(pull->session_path);

	for (i = 0; i < pull->ntables; i++)
		MapTable(pull, &pull->tables[i]);
	CheckSubset(pull);
	deps = PulledDependencies(pull);
	LoadTables(pull, deps);
	foreach(lc, pull->folds)
		FoldDelta(pull, lfirst(lc));
	CheckTables(pull);
	for (i = 0; i < pull->ntables; i++)
		if (pull->tables[i].prove && pull->tables[i].stage && pull->tables[i].complete)
			ProveTable(pull, &pull->tables[i]);

	order = StagedOrder(pull, deps, &order_pos);
	DeferConstraints(pull, deps, order_pos);
	for (i = 0; order[i] >= 0; i++)
		uniques |= (pull->tables[order[i]].uniques != NIL);

	/* 1. free unique values: unreferenced rows the archive lacks go first */
	if (uniques)
		for (i--; i >= 0; i--)
			DeleteUnreferenced(pull, order[i]);

	/* 2. parents first: conflicts settled, rows inserted and updated */
	for (i = 0; order[i] >= 0; i++)
	{
		bool		moves = ResolveConflicts(pull, deps, order[i]);

		MergeTable(pull, deps, order_pos, order[i], moves);
	}

	/* 3. cycles completed, then the other rows the archive lacks deleted */
	for (i = 0; order[i] >= 0; i++)
		ApplyBackColumns(pull, deps, order_pos, order[i]);
	for (i = 0; order[i] >= 0; i++)
	{
		KeepReferenced(pull, deps, order[i]);
		ClearBackColumns(pull, deps, order_pos, order[i]);
	}
	while (--i >= 0)
		DeleteMissing(pull, order[i]);

	/* every reference is checked before the pull ends, deferred ones too */
	SyncExecute("SET CONSTRAINTS ALL IMMEDIATE", 0, NULL, NULL, NULL);
	Finish(pull);
	AtEOXact_GUC(true, save_nestlevel);
}

/*
 * Compare a staged table with the copy here: rows the copy lacks, rows of
 * the range the archive lacks, rows whose values differ (by the columns
 * both have, byte for byte as a pull compares them); with the first keys of
 * each, in pull->cxt.
 */
static void
CompareTable(Pull *pull, PullTable *t)
{
	StringInfoData here;
	StringInfoData there;
	const char *k = t->mt.key;
	char	   *missing;
	char	   *extra;
	char	   *changed;
	MemoryContext oldcxt;
	bool		isnull;
	int			i;

	initStringInfo(&here);
	initStringInfo(&there);
	for (i = 0; i < t->at.ncolumns; i++)
		if (t->local[i])
		{
			appendStringInfo(&here, "%sx.%s", here.len ? ", " : "", quote_identifier(t->at.columns[i].name));
			appendStringInfo(&there, "%ss.%s", there.len ? ", " : "", quote_identifier(t->at.columns[i].name));
		}
	missing = psprintf("FROM %s s WHERE NOT EXISTS (SELECT 1 FROM %s x WHERE x.%s = s.%s)",
					   t->stage, t->from, k, k);
	extra = psprintf("FROM %s x WHERE x.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
					 " AND NOT EXISTS (SELECT 1 FROM %s s WHERE s.%s = x.%s)",
					 t->from, k, pull->range.start, pull->range.end, t->stage, k, k);
	changed = psprintf("FROM %s x JOIN %s s ON s.%s = x.%s"
					   " WHERE pg_catalog.record_image_ne(ROW(%s), ROW(%s))",
					   t->from, t->stage, k, k, here.data, there.data);
	SyncExecute(psprintf("SELECT (SELECT pg_catalog.count(*) %s),"
						 " ARRAY(SELECT s.%s::pg_catalog.int8 %s ORDER BY 1 LIMIT 5),"
						 " (SELECT pg_catalog.count(*) %s),"
						 " ARRAY(SELECT x.%s::pg_catalog.int8 %s ORDER BY 1 LIMIT 5),"
						 " (SELECT pg_catalog.count(*) %s),"
						 " ARRAY(SELECT x.%s::pg_catalog.int8 %s ORDER BY 1 LIMIT 5)",
						 missing, k, missing, extra, k, extra, changed, k, changed),
				0, NULL, NULL, NULL);
	SyncGetInt64(0, 1, &t->missing);
	SyncGetInt64(0, 3, &t->extra);
	SyncGetInt64(0, 5, &t->changed);
	oldcxt = MemoryContextSwitchTo(pull->cxt);
	t->first_missing = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull), false, -1);
	t->first_extra = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull), false, -1);
	t->first_changed = datumCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull), false, -1);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Compare the staged archive with the copy here, table by table, changing
 * nothing: every registered table was staged (whatever its checksum), the
 * registry is left alone, and the staging tables are dropped again.  The
 * caller is connected to SPI.
 */
void
SyncVerifyArchive(Pull *pull)
{
	int			save_nestlevel = SyncPinInputSettings(pull->session_path);
	ListCell   *lc;
	int			i;

	pull->verify = true;
	for (i = 0; i < pull->ntables; i++)
		MapTable(pull, &pull->tables[i]);
	LoadTables(pull, NIL);
	foreach(lc, pull->folds)
		FoldDelta(pull, lfirst(lc));
	CheckTables(pull);
	for (i = 0; i < pull->ntables; i++)
	{
		PullTable  *t = &pull->tables[i];

		CHECK_FOR_INTERRUPTS();
		if (!t->stage)
			continue;
		SyncProgressPhase("comparing", t->at.qualname);
		CompareTable(pull, t);
		SyncExecute(psprintf("DROP TABLE %s", t->stage), 0, NULL, NULL, NULL);
	}
	AtEOXact_GUC(true, save_nestlevel);
}
