/*-------------------------------------------------------------------------
 *
 * reach.c
 *		What a merge's deletions and changes would reach through foreign
 *		keys.
 *
 * A pull may change only rows of the pulled machine's range.  Deleting a
 * row, or changing a value other rows reference, reaches the rows that
 * reference it, whatever the foreign key's action (CASCADE, SET NULL, SET
 * DEFAULT, or refusing).  Before a merge deletes or changes rows, every
 * row that would be reached is looked for; rows of the pulled range in
 * pulled tables are the pull's own to change, any other fails the pull,
 * named, before anything is changed.  The check sees every row
 * (row_security off: a policy that would hide one makes the check fail
 * rather than miss it), in the table and in its partitions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "fkeys.h"
#include "reach.h"

/* The pulled table that is relid here, or NULL. */
static const SyncMergeTarget *
PulledTable(const SyncMergeTarget *const *pulled, int npulled, Oid relid)
{
	int			i;

	for (i = 0; i < npulled; i++)
		if (OidIsValid(relid) && pulled[i]->relid == relid)
			return pulled[i];
	return NULL;
}

/* A table as a FROM item: its own rows, with those of its partitions. */
static char *
FromItem(Oid relid)
{
	char	   *name = SyncRelationName(relid);

	return (get_rel_relkind(relid) == RELKIND_RELATION) ?
		psprintf("ONLY %s", name) : name;
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
 * The referenced columns of ref that the merge may change (of changing,
 * the names of the columns it writes), as row constructors of old (alias
 * p) and new (alias s) values; false if there are none.
 */
static bool
ChangingColumns(SyncReference *ref, List *changing, StringInfo old_row,
				StringInfo new_row)
{
	ListCell   *lc;

	foreach(lc, ref->columns)
	{
		const char *column = lfirst(lc);
		ListCell   *c;

		foreach(c, changing)
			if (strcmp(lfirst(c), column) == 0)
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
 * deletion (or with changing, a change of the referenced values) of rows
 * of t would reach, though this pull must not change them: their names,
 * and the keys of the rows of t they reference.  NULL: nothing can be
 * reached.
 */
static char *
ReachSql(const SyncMergeTarget *t, const SyncMergeTarget *child,
		 SyncReference *ref, List *changing, const char *doomed)
{
	char	   *cfrom = FromItem(ref->child);
	const char *spared;
	StringInfoData old_row;
	StringInfoData new_row;

	initStringInfo(&old_row);
	initStringInfo(&new_row);
	if (changing && !ChangingColumns(ref, changing, &old_row, &new_row))
		return NULL;

	/* the referencing rows this pull may change itself */
	if (child && changing)
		spared = psprintf("(c.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT ")",
						  child->key, t->range.start, t->range.end);
	else if (child && child->relid == t->relid)
		spared = psprintf("EXISTS (SELECT 1 FROM %s d WHERE d.%s = c.%s)",
						  doomed, t->key, t->key);
	else if (child && child->stage)
		spared = SyncDeletedRowsSql(child, "c");
	else
		spared = "false";

	if (!changing)
		return psprintf("SELECT %s, p.%s FROM %s c JOIN %s p ON %s"
						" WHERE EXISTS (SELECT 1 FROM %s d WHERE d.%s = p.%s) AND NOT %s LIMIT 5",
						RowNameSql(ref->child), t->key, cfrom, t->from, ref->join_sql,
						doomed, t->key, t->key, spared);
	return psprintf("SELECT %s, p.%s FROM %s c JOIN %s p ON %s"
					" JOIN %s s ON s.%s = p.%s"
					" WHERE p.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
					"   AND pg_catalog.record_image_ne(ROW(%s), ROW(%s)) AND %s AND NOT %s LIMIT 5",
					RowNameSql(ref->child), t->key, cfrom, t->from, ref->join_sql,
					t->stage, t->key, t->key,
					t->key, t->range.start, t->range.end,
					old_row.data, new_row.data, SyncNotSkippedSql(t, "s"), spared);
}

/* Report the rows ReachSql found. */
static void
ReportReach(const SyncMergeTarget *t, SyncReference *ref, bool changing)
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
	if (changing)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("pull of machine " INT64_FORMAT " would change values of table %s that rows of table %s reference",
						t->machine_id, t->qualname, cname),
				 errdetail("Rows of %s (%s) reference columns %s of rows of %s (keys %s) that machine " INT64_FORMAT " changes; the change would reach rows this pull must not change. Nothing was applied.",
						   cname, ckeys.data, columns.data, t->qualname, tkeys.data,
						   t->machine_id),
				 errhint("Change the referencing rows first, then pull again.")));
	ereport(ERROR,
			(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
			 errmsg("pull of machine " INT64_FORMAT " would delete rows of table %s that rows of table %s still reference",
					t->machine_id, t->qualname, cname),
			 errdetail("Rows of %s (%s) reference rows of %s (keys %s) that machine " INT64_FORMAT " no longer publishes; deleting them would reach rows this pull must not change. Nothing was applied.",
					   cname, ckeys.data, t->qualname, tkeys.data, t->machine_id),
			 errhint("Change or delete the referencing rows first, then pull again.")));
}

/*
 * No row that this pull must not change may be reached through a foreign
 * key referencing t: neither by deleting the rows of t listed in doomed
 * (SyncDoom, which locked them) nor, with changing (doomed NULL), by
 * changing the values of columns changing that rows of t's staging table
 * give.  pulled: every pulled table's target, whose rows of the range are
 * the pull's own.
 */
void
SyncCheckReach(const SyncMergeTarget *t, const SyncMergeTarget *const *pulled,
			   int npulled, List *changing, const char *doomed)
{
	List	   *refs = SyncReferencesTo(t->relid);
	ListCell   *lc;
	int			save_nestlevel;

	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("row_security", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	foreach(lc, refs)
	{
		SyncReference *ref = lfirst(lc);
		char	   *sql = ReachSql(t, PulledTable(pulled, npulled, ref->child),
								   ref, changing, doomed);

		if (sql && SyncExecute(sql, 0, NULL, NULL, NULL) > 0)
			ReportReach(t, ref, changing != NIL);
	}
	AtEOXact_GUC(true, save_nestlevel);
}

/*
 * SQL condition: row alias of t is referenced through a foreign key by a
 * row of any table (a row that deleting it would reach).
 */
char *
SyncReferencedSql(const SyncMergeTarget *t, const char *alias)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	foreach(lc, SyncReferencesTo(t->relid))
	{
		SyncReference *ref = lfirst(lc);

		appendStringInfo(&sql, "%sEXISTS (SELECT 1 FROM %s r WHERE %s)",
						 sql.len ? " OR " : "", FromItem(ref->child),
						 SyncReferenceJoin(ref, "r", alias));
	}
	return sql.len ? psprintf("(%s)", sql.data) : "false";
}
