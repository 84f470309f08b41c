/*-------------------------------------------------------------------------
 *
 * merge.c
 *		The statements of a merge, each checked against its plan.
 *
 * A merge writes a table from its staging table (the archive's rows) with
 * INSERT, UPDATE and DELETE statements, and no trigger is disabled.  So a
 * trigger that returns NULL, or a row changed or removed by another session
 * meanwhile, can make a statement do less (or more) than planned, and the
 * copy would differ from what its owner published.  Each statement here
 * therefore runs as one SQL statement of two steps: the rows it is to
 * change are materialized first (the plan), then changed, and the keys of
 * the rows changed are compared with the plan's.  Any difference fails the
 * pull, naming the table, the operation, planned and done, and the first
 * keys concerned.  A rule would rewrite the statement (a DO INSTEAD rule
 * could even return what looks like the planned rows): a statement that a
 * rule of the table rewrites is not run at all.
 *
 * Rows to update or delete are found once, in the plan, and reached again by
 * their physical address (ctid, and tableoid for partitions) with a TID
 * scan: the plan costs no second scan of the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "commands/trigger.h"
#include "rewrite/prs2lock.h"
#include "rewrite/rewriteDefine.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/rel.h"

#include "keys.h"
#include "merge.h"
#include "progress.h"

/*
 * The columns a plan adds to address the rows it found, and the condition
 * that finds them again: by a TID scan of just those rows (ctid = ANY),
 * then matched with the plan's rows (tableoid too: partitions share ctids).
 */
#define PLAN_ADDRESS "x.tableoid AS \"sync plan rel\", x.ctid AS \"sync plan tid\""
#define PLAN_JOIN \
	"x.ctid = ANY (ARRAY(SELECT \"sync plan tid\" FROM plan))" \
	" AND x.tableoid = p.\"sync plan rel\" AND x.ctid = p.\"sync plan tid\""

/*
 * SQL condition: row alias of the target is one this merge deletes (of the
 * pulled range, and not in the archive).
 */
char *
SyncDeletedRowsSql(const SyncMergeTarget *t, const char *alias)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	/* a delta names the rows it deletes: they are found by key, not by scan */
	if (t->deleted)
		appendStringInfo(&sql, "(%s.%s IN (SELECT d.%s FROM %s d) AND ",
						 alias, t->key, t->key, t->deleted);
	else
		appendStringInfoChar(&sql, '(');
	appendStringInfo(&sql, "%s.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
					 " AND NOT EXISTS (SELECT 1 FROM %s s WHERE s.%s = %s.%s)",
					 alias, t->key, t->range.start, t->range.end,
					 t->stage, t->key, alias, t->key);
	/* rows that rows left out still reference stay until they are applied */
	foreach(lc, t->keepers)
	{
		SyncKeeper *k = lfirst(lc);

		appendStringInfo(&sql, " AND NOT EXISTS (SELECT 1 FROM %s kc JOIN %s kk ON kk.key = kc.%s WHERE %s)",
						 k->child->from, k->child->skip, k->child->key,
						 SyncForeignKeyJoin(k->fk, "kc", alias));
	}
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/*
 * SQL condition: the staged row alias is not one that on_conflict left out.
 */
char *
SyncNotSkippedSql(const SyncMergeTarget *t, const char *alias)
{
	if (t->skip == NULL)
		return "true";
	return psprintf("NOT EXISTS (SELECT 1 FROM %s k WHERE k.key = %s.%s)",
					t->skip, alias, t->key);
}

/* Does the rule fire in this session (as the rewriter decides)? */
static bool
RuleFires(const RewriteRule *rule)
{
	if (rule->enabled == RULE_DISABLED)
		return false;
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return rule->enabled != RULE_FIRES_ON_ORIGIN;
	return rule->enabled != RULE_FIRES_ON_REPLICA;
}

/*
 * The rule of the target, if any, that rewrites statements of type cmd in
 * this session.
 */
static Oid
RewritingRule(const SyncMergeTarget *t, CmdType cmd)
{
	Relation	rel = table_open(t->relid, AccessShareLock);
	Oid			ruleid = InvalidOid;
	int			i;

	for (i = 0; rel->rd_rules != NULL && i < rel->rd_rules->numLocks; i++)
	{
		RewriteRule *rule = rel->rd_rules->rules[i];

		if (rule->event == cmd && RuleFires(rule))
		{
			ruleid = rule->ruleId;
			break;
		}
	}
	table_close(rel, AccessShareLock);
	return ruleid;
}

/*
 * Refuse a statement that a rule rewrites, when it has rows to change: a
 * DO INSTEAD rule would decide what is done, and RETURNING, by which the
 * statement is checked, would report what the rule's statement returned;
 * PostgreSQL refuses DO ALSO rules for the statements a merge runs
 * (data-modifying WITH) anyway.  Returns false when there is nothing to
 * do, so the statement need not run.
 */
static bool
CheckRules(const SyncMergeTarget *t, CmdType cmd, const char *operation,
		   const char *plan, Oid ruleid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(ruleid)};

	if (SyncExecute(psprintf("SELECT 1 FROM (%s) p LIMIT 1", plan), 0, NULL, NULL, NULL) == 0)
		return false;
	SyncExecute("SELECT rulename FROM pg_catalog.pg_rewrite WHERE oid = $1",
				1, argtypes, values, NULL);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pull of machine " INT64_FORMAT " cannot %s rows of table %s, which has rule \"%s\"",
					t->machine_id, operation, t->qualname, SyncGetText(0, 1)),
			 errdetail("A rule rewrites the %s statements of a pull, which could then not be checked against what they were to do; nothing was applied.",
					   cmd == CMD_INSERT ? "INSERT" : cmd == CMD_UPDATE ? "UPDATE" : "DELETE"),
			 errhint("Sync does not disable rules: replace the rule with a trigger or drop it here, or stop sharing the table here with sync_remove_table().")));
	return true;				/* not reached */
}

/* the largest share of a table a delta's rows are looked up in by key */
#define SYNC_LOOKUP_SHARE 0.1

/* The rows the planner believes target t has. */
static double
TargetRows(const SyncMergeTarget *t)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(t->relid));
	double		rows = 0;

	if (HeapTupleIsValid(tuple))
	{
		rows = ((Form_pg_class) GETSTRUCT(tuple))->reltuples;
		ReleaseSysCache(tuple);
	}
	return rows;
}

/*
 * Before a statement that finds a delta's rows in target t: rows are to be
 * found by key, one index lookup each, rather than by reading the whole
 * table for a hash join (a plan the planner may well prefer when the few
 * rows of a delta meet a large table).  SyncEndKeyLookups(returned level)
 * ends it; an error's abort does too.  Nothing for a full archive, for a
 * table without an index on its key (where a lookup is a scan), nor for a
 * delta that touches a large share of its table.
 */
int
SyncBeginKeyLookups(const SyncMergeTarget *t)
{
	int			level;

	if (t->deleted == NULL || !t->keyed ||
		(double) t->touched > SYNC_LOOKUP_SHARE * TargetRows(t))
		return -1;
	level = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/* End what SyncBeginKeyLookups began. */
void
SyncEndKeyLookups(int level)
{
	if (level >= 0)
		AtEOXact_GUC(true, level);
}

/*
 * Run a planned statement (of type cmd): plan is a query over the target (alias x) or the
 * staging table (alias s) that yields the rows to change, with the key
 * column among them; change is the statement that changes them, reading
 * the plan as p and returning the key of each row it changed.  Returns the
 * rows changed, which must be the rows planned.
 */
static int64
RunPlanned(const SyncMergeTarget *t, CmdType cmd, const char *operation,
		   const char *plan, const char *change)
{
	int64		planned = 0;
	int64		done = 0;
	char	   *missing;
	char	   *unplanned;
	Oid			ruleid = RewritingRule(t, cmd);
	int			lookups;
	bool		staged = (t->deleted != NULL);

	if (OidIsValid(ruleid) && !CheckRules(t, cmd, operation, plan, ruleid))
		return 0;

	/* a delta's rows, found by key first; the change then joins them by ctid */
	if (staged)
	{
		lookups = SyncBeginKeyLookups(t);
		SyncExecute(psprintf("CREATE TEMP TABLE sync_pull_plan ON COMMIT DROP AS %s", plan),
					0, NULL, NULL, NULL);
		SyncEndKeyLookups(lookups);
		plan = "SELECT * FROM pg_temp.sync_pull_plan";
	}
	SyncExecute(psprintf("WITH plan AS MATERIALIZED (%s),"
						 " done AS (%s)"
						 " SELECT (SELECT pg_catalog.count(*) FROM plan),"
						 "        (SELECT pg_catalog.count(*) FROM done),"
						 "   (SELECT pg_catalog.string_agg(k::text, ', ')"
						 "      FROM (SELECT %s FROM plan EXCEPT ALL SELECT * FROM done"
						 "            ORDER BY 1 LIMIT 5) d(k)),"
						 "   (SELECT pg_catalog.string_agg(k::text, ', ')"
						 "      FROM (SELECT * FROM done EXCEPT ALL SELECT %s FROM plan"
						 "            ORDER BY 1 LIMIT 5) d(k))",
						 plan, change, t->key, t->key),
				0, NULL, NULL, NULL);
	SyncGetInt64(0, 1, &planned);
	SyncGetInt64(0, 2, &done);
	missing = SyncGetText(0, 3);
	unplanned = SyncGetText(0, 4);
	if (planned != done || missing || unplanned)
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
				 errmsg("pull of machine " INT64_FORMAT " planned to %s " INT64_FORMAT " rows of table %s, but " INT64_FORMAT " were",
						t->machine_id, operation, planned, t->qualname, done),
				 missing ?
				 errdetail("Not done for keys %s. A trigger, rule or other session changed what the statement did; nothing was applied.",
						   missing) :
				 unplanned ?
				 errdetail("Done for keys %s, which were not planned. A trigger, rule or other session changed what the statement did; nothing was applied.",
						   unplanned) :
				 errdetail("A trigger, rule or other session changed what the statement did; nothing was applied."),
				 errhint("Sync does not disable triggers: a BEFORE trigger that returns NULL for another machine's rows keeps its copy from matching what its owner published. Let such rows through, for example when their key is outside this machine's range.")));
	if (staged)
		SyncExecute("DROP TABLE pg_temp.sync_pull_plan", 0, NULL, NULL, NULL);
	SyncProgressRows(done);
	return done;
}

/*
 * Insert the staged rows of the range that are not in the target (nor left
 * out by on_conflict) and that condition (over the staged row s) selects:
 * values is the select list over the plan p for the target's columns.
 * Returns the rows inserted.
 */
int64
SyncMergeInsert(const SyncMergeTarget *t, const char *columns, const char *values,
				const char *condition)
{
	SyncProgressPhase("inserting", t->qualname);
	return RunPlanned(t, CMD_INSERT, "insert",
					  psprintf("SELECT s.* FROM %s s"
							   " WHERE s.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
							   "   AND NOT EXISTS (SELECT 1 FROM %s x WHERE x.%s = s.%s) AND %s AND %s",
							   t->stage, t->key, t->range.start, t->range.end,
							   t->from, t->key, t->key, SyncNotSkippedSql(t, "s"), condition),
					  psprintf("INSERT INTO %s AS x (%s) OVERRIDING SYSTEM VALUE"
							   " SELECT %s FROM plan p RETURNING x.%s",
							   t->qualname, columns, values, t->key));
}

/*
 * Update the rows of the range whose columns (set, and as row constructors
 * old_row over the target x and new_row over the staged row s) differ from
 * the staged ones, and that condition (over s) selects.  Rows differ if
 * their images differ: a value that is equal but not the same (1.5 and
 * 1.50, '1 day' and '24:00:00') is written too, so that the copy becomes
 * exactly what the publisher has.  set reads the staged row as p.  Returns
 * the rows updated.
 */
int64
SyncMergeUpdate(const SyncMergeTarget *t, const char *set, const char *old_row,
				const char *new_row, const char *condition)
{
	return RunPlanned(t, CMD_UPDATE, "update",
					  psprintf("SELECT " PLAN_ADDRESS ", s.* FROM %s x JOIN %s s ON s.%s = x.%s"
							   " WHERE x.%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
							   "   AND pg_catalog.record_image_ne(ROW(%s), ROW(%s)) AND %s AND %s",
							   t->from, t->stage, t->key, t->key,
							   t->key, t->range.start, t->range.end,
							   old_row, new_row, SyncNotSkippedSql(t, "s"), condition),
					  psprintf("UPDATE %s x SET %s FROM plan p WHERE " PLAN_JOIN
							   " RETURNING x.%s",
							   t->from, set, t->key));
}

/*
 * Set columns (set, over the target x) of the rows of the target that
 * condition (over x) selects; operation names it in messages.  Returns the
 * rows updated.
 */
int64
SyncMergeSet(const SyncMergeTarget *t, const char *operation, const char *set,
			 const char *condition)
{
	return RunPlanned(t, CMD_UPDATE, operation,
					  psprintf("SELECT " PLAN_ADDRESS ", x.%s FROM %s x WHERE %s",
							   t->key, t->from, condition),
					  psprintf("UPDATE %s x SET %s FROM plan p WHERE " PLAN_JOIN
							   " RETURNING x.%s",
							   t->from, set, t->key));
}

/*
 * List the rows of the target that condition (over x) selects in a new
 * temporary table name, each locked (FOR UPDATE): until the transaction
 * ends, no other session can change them, or add a row that references
 * them, while what deleting them reaches is checked.  Returns the table's
 * qualified name; rows: how many.
 */
char *
SyncDoom(const SyncMergeTarget *t, const char *condition, const char *name,
		 int64 *rows)
{
	int			lookups = SyncBeginKeyLookups(t);

	*rows = SyncExecute(psprintf("CREATE TEMP TABLE %s ON COMMIT DROP AS"
								 " SELECT " PLAN_ADDRESS ", x.%s FROM %s x WHERE %s FOR UPDATE OF x",
								 name, t->key, t->from, condition),
						0, NULL, NULL, NULL);
	SyncEndKeyLookups(lookups);
	return psprintf("pg_temp.%s", name);
}

/*
 * Delete the rows SyncDoom listed in doomed, and drop it.  Returns the rows
 * deleted.
 */
int64
SyncMergeDelete(const SyncMergeTarget *t, const char *doomed)
{
	int64		deleted;

	SyncProgressPhase("deleting", t->qualname);
	deleted = RunPlanned(t, CMD_DELETE, "delete",
						 psprintf("SELECT * FROM %s", doomed),
						 psprintf("DELETE FROM %s x USING plan p WHERE " PLAN_JOIN
								  " RETURNING x.%s",
								  t->from, t->key));
	SyncExecute(psprintf("DROP TABLE %s", doomed), 0, NULL, NULL, NULL);
	return deleted;
}

/*
 * A key that no index makes unique must be unique among the target's rows
 * of the range (what: where they come from, and hint: what to do, for the
 * message).
 */
void
SyncCheckUniqueKeys(const SyncMergeTarget *t, const char *what, const char *hint)
{
	char	   *keys = SyncDuplicateKeys(t->from, t->key, t->range.start,
										 t->range.end, InvalidSnapshot);

	if (keys != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("%s of table %s has more than one row of machine " INT64_FORMAT " with the same key",
						what, t->qualname, t->machine_id),
				 errdetail("Keys %s appear more than once; rows are matched by key. Nothing was applied.",
						   keys),
				 errhint("%s", hint)));
}
