/*-------------------------------------------------------------------------
 *
 * conflict.c
 *		Unique constraints during a merge.
 *
 * Besides its key, a table may have unique constraints (and unique indexes)
 * on other columns.  Merging a machine's rows then meets values in the way:
 *
 * - Values that move between rows of the pulled machine: a row deleted and
 *   another created with its value, values handed along a chain, or two
 *   rows that swap values.  Rows the archive no longer has are deleted
 *   before any row is inserted where nothing references them (apply.c).
 *   Rows are then written in rounds, each writing the rows whose values are
 *   free by then (SyncFreeValuesSql).  What a cycle still holds is freed: a
 *   deferrable constraint is deferred to the end of the pull; otherwise the
 *   holder's column that may be NULL (and that no foreign key references)
 *   is emptied until its own update or deletion ("setting aside").
 *
 * - Values a row of another machine (or a local row) holds: a conflict
 *   between machines, which the table's on_conflict settles.  'error' fails
 *   the pull naming both rows; 'skip' leaves the incoming row out, and the
 *   incoming rows that reference it, until the conflict is gone.  A pull
 *   never changes another machine's row to resolve one.
 *
 * Constraints with a predicate or an expression are not looked at here;
 * PostgreSQL still enforces them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "conflict.h"
#include "registry.h"

/*
 * SQL: rows a and b hold the same values of u's columns, by its own
 * equality operators; with nulls, NULL counts as equal to NULL too.
 */
static char *
SameValuesSql(SyncUnique *u, const char *a, const char *b, bool nulls)
{
	StringInfoData sql;
	ListCell   *c;
	ListCell   *o;

	initStringInfo(&sql);
	forboth(c, u->columns, o, u->operators)
	{
		const char *col = quote_identifier(lfirst(c));

		appendStringInfo(&sql, "%s(%s.%s %s %s.%s", sql.len ? " AND " : "",
						 a, col, (char *) lfirst(o), b, col);
		if (nulls)
			appendStringInfo(&sql, " OR (%s.%s IS NULL AND %s.%s IS NULL)",
							 a, col, b, col);
		appendStringInfoChar(&sql, ')');
	}
	return sql.data;
}

/*
 * The unique constraints and indexes of a table other than its key's own,
 * without predicates or expressions.
 */
List *
SyncUniquesOf(Oid relid, AttrNumber key)
{
	Oid			argtypes[2] = {OIDOID, INT2OID};
	Datum		values[2] = {ObjectIdGetDatum(relid), Int16GetDatum(key)};
	List	   *uniques = NIL;
	int			n;
	int			i;

	n = SyncExecute("SELECT ci.relname::text,"
					"  CASE WHEN con.condeferrable THEN pg_catalog.quote_ident(ns.nspname)"
					"    OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(con.conname) END,"
					"  ARRAY(SELECT a.attname::text"
					"          FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY k(n, o)"
					"          JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n"
					"         WHERE k.o OPERATOR(pg_catalog.<=) i.indnkeyatts ORDER BY k.o),"
					"  ARRAY(SELECT pg_catalog.format('OPERATOR(%I.%s)', opn.nspname, op.oprname)"
					"          FROM pg_catalog.unnest(i.indclass::pg_catalog.oid[]) WITH ORDINALITY k(cls, o)"
					"          JOIN pg_catalog.pg_opclass oc ON oc.oid = k.cls"
					"          JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily"
					"           AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype"
					"           AND ao.amopstrategy = 3"
					"          JOIN pg_catalog.pg_operator op ON op.oid = ao.amopopr"
					"          JOIN pg_catalog.pg_namespace opn ON opn.oid = op.oprnamespace"
					"         ORDER BY k.o),"
					"  (SELECT a.attname::text"
					"     FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY k(n, o)"
					"     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n"
					"    WHERE k.o OPERATOR(pg_catalog.<=) i.indnkeyatts AND NOT a.attnotnull"
					"      AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint f"
					"                       WHERE f.contype = 'f' AND f.confrelid = i.indrelid"
					"                         AND a.attnum = ANY (f.confkey))"
					"    ORDER BY k.o LIMIT 1),"
#if PG_VERSION_NUM >= 150000
					"  i.indnullsnotdistinct"
#else
					"  false"
#endif
					"  FROM pg_catalog.pg_index i"
					"  JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid"
					"  LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid"
					"   AND con.conrelid = i.indrelid AND con.contype IN ('u', 'p')"
					"  LEFT JOIN pg_catalog.pg_namespace ns ON ns.oid = con.connamespace"
					" WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid"
					"   AND i.indpred IS NULL AND i.indexprs IS NULL"
					"   AND NOT (i.indnkeyatts = 1 AND i.indkey[0] = $2)"
					" ORDER BY ci.relname",
					2, argtypes, values, NULL);
	for (i = 0; i < n; i++)
	{
		SyncUnique *u = palloc0(sizeof(SyncUnique));

		u->name = SyncGetText(i, 1);
		u->constraint = SyncGetText(i, 2);
		u->columns = SyncGetTextList(i, 3);
		u->operators = SyncGetTextList(i, 4);
		u->nulls_equal = SyncGetBool(i, 6);
		if (list_length(u->operators) != list_length(u->columns))
			continue;			/* an operator class without equality */
		u->vacate = u->nulls_equal ? NULL : SyncGetText(i, 5);
		uniques = lappend(uniques, u);
	}
	return uniques;
}

/*
 * Defer the deferrable ones among uniques to the end of the pull: values
 * may then move between rows in any order.
 */
void
SyncDeferUniques(List *uniques)
{
	ListCell   *lc;

	foreach(lc, uniques)
	{
		SyncUnique *u = lfirst(lc);

		if (u->constraint)
			SyncExecute(psprintf("SET CONSTRAINTS %s DEFERRED", u->constraint),
						0, NULL, NULL, NULL);
	}
}

/* Are all columns of u in the staging table (so in the archive)? */
static bool
Checkable(SyncUnique *u, Oid stage_relid)
{
	ListCell   *lc;

	foreach(lc, u->columns)
		if (get_attnum(stage_relid, lfirst(lc)) == InvalidAttrNumber)
			return false;
	return true;
}

/* The skip table of t, created when first needed. */
static const char *
SkipTable(SyncMergeTarget *t, int position)
{
	if (t->skip == NULL)
	{
		char	   *name = psprintf("sync_pull_skip_%d", position);

		SyncExecute(psprintf("CREATE TEMP TABLE %s (key bigint PRIMARY KEY) ON COMMIT DROP", name),
					0, NULL, NULL, NULL);
		t->skip = psprintf("pg_temp.%s", name);
	}
	return t->skip;
}

/* Leave out the incoming rows of t with these keys. */
static void
Skip(SyncMergeTarget *t, List *keys, int position)
{
	StringInfoData list;
	ListCell   *lc;

	if (keys == NIL)
		return;
	initStringInfo(&list);
	foreach(lc, keys)
		appendStringInfo(&list, "%s" INT64_FORMAT, list.len ? ", " : "", *(int64 *) lfirst(lc));
	SyncExecute(psprintf("INSERT INTO %s SELECT pg_catalog.unnest('{%s}'::pg_catalog.int8[])"
						 " ON CONFLICT DO NOTHING", SkipTable(t, position), list.data),
				0, NULL, NULL, NULL);
}

/* Who owns the row with key here, for messages. */
static char *
Owner(int64 key)
{
	SyncMachine machine;

	if (SyncMachineOwning(key, &machine))
	{
		SyncMachine local;

		if (SyncLocalMachine(&local) && local.id == machine.id)
			return "this server";
		return psprintf("machine " INT64_FORMAT, machine.id);
	}
	return "no registered machine";
}

/* A row of the result of ConflictRows. */
typedef struct Conflict
{
	int64		incoming;		/* key of the incoming row */
	int64		holder;			/* key of the row holding its values here */
	bool		in_range;		/* the holder is the pulled machine's */
	bool		moves;			/* the holder changes those values, or goes */
	bool		skipped;		/* the holder's own incoming row is left out */
} Conflict;

/*
 * The incoming rows of t (not left out) whose new or changed values of u a
 * row with another key holds here.
 */
static List *
ConflictRows(const SyncMergeTarget *t, SyncUnique *u)
{
	List	   *conflicts = NIL;
	int			n;
	int			i;

	n = SyncExecute(psprintf("SELECT s.%s, e.%s, e.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT ","
							 "  NOT EXISTS (SELECT 1 FROM %s o WHERE o.%s = e.%s AND %s),"
							 "  %s"
							 "  FROM %s s JOIN %s e ON %s"
							 " WHERE s.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
							 "   AND e.%s <> s.%s AND %s"
							 "   AND NOT EXISTS (SELECT 1 FROM %s o WHERE o.%s = s.%s AND %s)"
							 " ORDER BY 1, 2",
							 t->key, t->key, t->key, t->range.start, t->range.end,
							 t->stage, t->key, t->key, SameValuesSql(u, "o", "e", true),
							 t->skip ? psprintf("EXISTS (SELECT 1 FROM %s k WHERE k.key = e.%s)",
												t->skip, t->key) : "false",
							 t->stage, t->from, SameValuesSql(u, "e", "s", u->nulls_equal),
							 t->key, t->range.start, t->range.end,
							 t->key, t->key, SyncNotSkippedSql(t, "s"),
							 t->from, t->key, t->key, SameValuesSql(u, "o", "s", true)),
					0, NULL, NULL, NULL);
	for (i = 0; i < n; i++)
	{
		Conflict   *c = palloc(sizeof(Conflict));

		SyncGetInt64(i, 1, &c->incoming);
		SyncGetInt64(i, 2, &c->holder);
		c->in_range = SyncGetBool(i, 3);
		c->moves = SyncGetBool(i, 4);
		c->skipped = SyncGetBool(i, 5);
		conflicts = lappend(conflicts, c);
	}
	return conflicts;
}

/* The columns of u, quoted, for messages. */
static char *
ColumnList(SyncUnique *u)
{
	StringInfoData list;
	ListCell   *lc;

	initStringInfo(&list);
	foreach(lc, u->columns)
		appendStringInfo(&list, "%s%s", list.len ? ", " : "", quote_identifier(lfirst(lc)));
	return list.data;
}

/*
 * Values of u that a row of another machine holds: with skip_policy the
 * incoming rows are left out, else the pull fails naming both rows.
 */
static void
ResolveBetweenMachines(SyncMergeTarget *t, SyncUnique *u, bool skip_policy,
					   int position)
{
	List	   *skipped = NIL;
	ListCell   *lc;
	char	   *owner;

	foreach(lc, ConflictRows(t, u))
	{
		Conflict   *c = lfirst(lc);

		if (c->in_range)
			continue;
		if (skip_policy)
		{
			skipped = lappend(skipped, &c->incoming);
			continue;
		}
		owner = Owner(c->holder);
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("row " INT64_FORMAT " of table %s from machine " INT64_FORMAT " conflicts with row " INT64_FORMAT " of %s",
						c->incoming, t->qualname, t->machine_id, c->holder, owner),
				 errdetail("Both hold the same values of %s (%s), which allows them in one row only. Nothing was applied.",
						   u->name, ColumnList(u)),
				 errhint("Resolve it on one of the machines by changing or deleting one of the rows there, or register the table with on_conflict => 'skip' to leave such rows out until then.")));
	}
	Skip(t, skipped, position);
}

/*
 * Values of u that rows of the pulled machine hold here: an incoming row
 * whose values a row left out holds is left out too (skip_policy), or
 * fails the pull; values a row holds that keeps them (the publisher has two
 * rows with them) fail the pull.  Values that move are left to the rounds.
 */
static void
CheckWithinMachine(SyncMergeTarget *t, SyncUnique *u, bool skip_policy,
				   int position)
{
	List	   *skipped = NIL;
	ListCell   *lc;

	foreach(lc, ConflictRows(t, u))
	{
		Conflict   *c = lfirst(lc);

		if (!c->in_range)
			continue;
		if (c->skipped && skip_policy)
			skipped = lappend(skipped, &c->incoming);
		else if (c->skipped)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("row " INT64_FORMAT " of table %s from machine " INT64_FORMAT " needs values of %s that row " INT64_FORMAT " holds, which this pull leaves out",
							c->incoming, t->qualname, t->machine_id, u->name, c->holder),
					 errdetail("Row " INT64_FORMAT " references a row another machine's values keep out. Nothing was applied.",
							   c->holder),
					 errhint("Resolve the conflict that keeps it out, or register table %s with on_conflict => 'skip'.",
							 t->qualname)));
		else if (!c->moves)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("rows " INT64_FORMAT " and " INT64_FORMAT " of table %s from machine " INT64_FORMAT " hold the same values of %s",
							c->incoming, c->holder, t->qualname, t->machine_id, u->name),
					 errdetail("The archive gives both the same values of (%s), which %s here allows in one row only. Nothing was applied.",
							   ColumnList(u), u->name),
					 errhint("The tables differ between the two servers: give the constraint to both, or to neither.")));
	}
	Skip(t, skipped, position);
}

/*
 * Leave out the incoming rows of t that unique values keep out: those
 * whose values other machines' rows hold (skip_policy; else the pull
 * fails), and those whose values a row left out holds.  Called until
 * nothing more is left out.  position names t's skip table.
 */
void
SyncSkipConflicts(SyncMergeTarget *t, List *uniques, bool skip_policy,
				  int position)
{
	ListCell   *lc;

	foreach(lc, uniques)
		if (Checkable(lfirst(lc), t->stage_relid))
			ResolveBetweenMachines(t, lfirst(lc), skip_policy, position);
	foreach(lc, uniques)
		if (Checkable(lfirst(lc), t->stage_relid))
			CheckWithinMachine(t, lfirst(lc), skip_policy, position);
}

/*
 * Do values of a constraint that does not wait until the end move between
 * rows of the pulled machine (so t is written in rounds)?
 */
bool
SyncValuesMove(const SyncMergeTarget *t, List *uniques)
{
	ListCell   *lu;

	foreach(lu, uniques)
	{
		SyncUnique *u = lfirst(lu);
		ListCell   *lc;

		if (u->constraint != NULL || !Checkable(u, t->stage_relid))
			continue;
		foreach(lc, ConflictRows(t, u))
		{
			Conflict   *c = lfirst(lc);

			if (c->in_range && c->moves && !c->skipped)
				return true;
		}
	}
	return false;
}

/*
 * Values that still move between rows of the pulled machine once every row
 * whose values were free has been written: a cycle (rows that swap values,
 * or a row that takes values a row about to be deleted holds).  The holders
 * are set aside (their column that may be NULL, and that no foreign key
 * references, emptied until their own update or deletion); a constraint
 * without such a column fails the pull.
 */
void
SyncSetAsideMoves(SyncMergeTarget *t, List *uniques)
{
	ListCell   *lu;

	foreach(lu, uniques)
	{
		SyncUnique *u = lfirst(lu);
		StringInfoData holders;
		ListCell   *lc;
		Conflict   *first = NULL;

		if (u->constraint != NULL || !Checkable(u, t->stage_relid))
			continue;
		initStringInfo(&holders);
		foreach(lc, ConflictRows(t, u))
		{
			Conflict   *c = lfirst(lc);

			if (!c->in_range || !c->moves || c->skipped)
				continue;
			appendStringInfo(&holders, "%s" INT64_FORMAT, holders.len ? ", " : "", c->holder);
			if (first == NULL)
				first = c;
		}
		if (first == NULL)
			continue;
		if (u->vacate == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("cannot apply the rows of machine " INT64_FORMAT " to table %s: values of %s move between its rows in a cycle",
							t->machine_id, t->qualname, u->name),
					 errdetail("Row " INT64_FORMAT " takes values (%s) that row " INT64_FORMAT " holds until it changes or goes, and no column of %s may be emptied meanwhile (NOT NULL, or referenced by a foreign key).",
							   first->incoming, ColumnList(u), first->holder, u->name),
					 errhint("Make %s DEFERRABLE, or allow NULL in one of its columns: sync then applies such moves.",
							 u->name)));
		(void) SyncMergeSet(t, "set aside values of",
							psprintf("%s = NULL", quote_identifier(u->vacate)),
							psprintf("x.%s = ANY ('{%s}'::pg_catalog.int8[])", t->key, holders.data));
	}
}

/*
 * SQL condition: the staged row alias's values of every unique constraint
 * that does not wait until the end are free here (no row with another key
 * holds them), so that it can be written now.
 */
char *
SyncFreeValuesSql(const SyncMergeTarget *t, List *uniques, const char *alias)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	foreach(lc, uniques)
	{
		SyncUnique *u = lfirst(lc);

		if (u->constraint != NULL || !Checkable(u, t->stage_relid))
			continue;
		appendStringInfo(&sql, "%sNOT EXISTS (SELECT 1 FROM %s e WHERE e.%s <> %s.%s AND %s)",
						 sql.len ? " AND " : "", t->from, t->key, alias, t->key,
						 SameValuesSql(u, "e", alias, u->nulls_equal));
	}
	return sql.len ? sql.data : "true";
}

/*
 * SQL condition: row old (here) and row new (staged) differ in the values
 * of some unique constraint that does not wait until the end: the rows the
 * rounds update.
 */
char *
SyncMovingValuesSql(const SyncMergeTarget *t, List *uniques, const char *old,
					const char *new)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	foreach(lc, uniques)
	{
		SyncUnique *u = lfirst(lc);

		if (u->constraint != NULL || !Checkable(u, t->stage_relid))
			continue;
		appendStringInfo(&sql, "%sNOT (%s)", sql.len ? " OR " : "",
						 SameValuesSql(u, old, new, true));
	}
	return sql.len ? psprintf("(%s)", sql.data) : "false";
}

/* How many incoming rows of t are left out so far. */
int64
SyncSkipCount(const SyncMergeTarget *t)
{
	int64		n = 0;

	if (t->skip == NULL)
		return 0;
	SyncExecute(psprintf("SELECT pg_catalog.count(*) FROM %s", t->skip), 0, NULL, NULL, NULL);
	SyncGetInt64(0, 1, &n);
	return n;
}

/*
 * Leave out the incoming rows of t that reference, through foreign key fk,
 * an incoming row of parent that was left out, when no row here has the
 * values they reference: they would reference nothing.  Repeated while
 * rows are added, for a table that references itself.
 */
void
SyncSkipReferencing(SyncMergeTarget *t, const SyncMergeTarget *parent,
					SyncForeignKey *fk, int position)
{
	int			added;

	if (parent->skip == NULL)
		return;
	do
	{
		added = SyncExecute(psprintf("INSERT INTO %s SELECT c.%s FROM %s c JOIN %s p ON %s"
									 "  JOIN %s k ON k.key = p.%s"
									 " WHERE NOT EXISTS (SELECT 1 FROM %s x WHERE %s)"
									 " ON CONFLICT DO NOTHING",
									 SkipTable(t, position), t->key, t->stage, parent->stage,
									 fk->join_sql, parent->skip, parent->key,
									 parent->from, SyncForeignKeyJoin(fk, "c", "x")),
							0, NULL, NULL, NULL);
	} while (added > 0 && t->relid == parent->relid);
}

/* What was left out of t, if anything. */
bool
SyncSkippedRows(const SyncMergeTarget *t, SyncSkipped *skipped)
{
	if (t->skip == NULL)
		return false;
	SyncExecute(psprintf("SELECT pg_catalog.count(*),"
						 "  (SELECT pg_catalog.string_agg(key::text, ', ')"
						 "     FROM (SELECT key FROM %s ORDER BY key LIMIT 5) f)"
						 "  FROM %s", t->skip, t->skip),
				0, NULL, NULL, NULL);
	SyncGetInt64(0, 1, &skipped->rows);
	skipped->keys = SyncGetText(0, 2);
	return skipped->rows > 0;
}
