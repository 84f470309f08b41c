/*-------------------------------------------------------------------------
 *
 * closure.c
 *		Referential closure of a dump.
 *
 * When a local row is left out of a dump (by level or filter), local rows
 * that reference it through a foreign key between registered tables are
 * left out as well, transitively, so that a subscriber never receives a
 * reference to a row it does not get.  References to other machines' rows
 * are not followed: those rows are their owners' to publish.
 *
 * For every registered table that takes part in such a foreign key, the
 * keys of its left-out rows are collected in a temporary table; the
 * foreign keys are then followed until nothing more is left out (a
 * fixpoint, which also settles self-references and cycles).  Tables whose
 * left-out rows nothing references cost nothing more than their dump query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"

#include "closure.h"
#include "fkeys.h"

/*
 * Compute which local rows each table leaves out because of a reference to
 * a left-out row; sets ex_table and ex_rows of the tables concerned.  All
 * queries see snapshot; $3 of a keep condition is the dump's level.  The
 * caller is connected to SPI.
 */
void
SyncDumpClosure(SyncClosureTable **tables, int ntables, const SyncRange *range,
				int level, Snapshot snapshot)
{
	Oid		   *relids = palloc(sizeof(Oid) * (ntables + 1));
	List	   *fkeys;
	ListCell   *lc;
	Oid			argtypes[3] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3] = {Int64GetDatum(range->start), Int64GetDatum(range->end),
	Int32GetDatum(level)};
	bool	   *seeded = palloc0(sizeof(bool) * (ntables + 1));
	SyncStatement st = {NULL, 3, argtypes, values, NULL, 0, snapshot};
	int			round;
	int			i;

	for (i = 0; i < ntables; i++)
		relids[i] = tables[i]->relid;
	fkeys = SyncForeignKeysAmong(relids, ntables);
	if (fkeys == NIL)
		return;

	/* a key table for every table on either end of a foreign key */
	foreach(lc, fkeys)
	{
		SyncForeignKey *fk = lfirst(lc);
		int			ends[2] = {fk->child, fk->parent};
		int			e;

		for (e = 0; e < 2; e++)
		{
			SyncClosureTable *t = tables[ends[e]];

			if (t->ex_table)
				continue;
			t->ex_table = psprintf("pg_temp.sync_dump_excluded_%d", ends[e] + 1);
			SyncExecute(psprintf("CREATE TEMP TABLE %s (key bigint PRIMARY KEY, round integer NOT NULL)",
								 strchr(t->ex_table, '.') + 1),
						0, NULL, NULL, NULL);
			/* for the tables' owners, who evaluate the keep conditions (no
			 * other session can reach a temporary table) */
			SyncExecute(psprintf("GRANT SELECT, INSERT ON %s TO PUBLIC", t->ex_table),
						0, NULL, NULL, NULL);
			t->ex_rows = 0;
		}
	}

	/* seed: the parents' own left-out rows */
	foreach(lc, fkeys)
	{
		SyncForeignKey *fk = lfirst(lc);
		SyncClosureTable *p = tables[fk->parent];

		if (seeded[fk->parent] || strcmp(p->keep_sql, "true") == 0)
			continue;
		seeded[fk->parent] = true;
		/* the keep condition runs as the table's owner, like the dump's */
		st.sql = psprintf("INSERT INTO %s"
						  " SELECT t.%s, 0 FROM %s t"
						  " WHERE t.%s BETWEEN $1 AND $2 AND NOT (%s)"
						  " ON CONFLICT DO NOTHING",
						  p->ex_table, p->key, p->from, p->key, p->keep_sql);
		SyncRunAs(SyncRelationOwner(p->relid), SyncExecuteStatement, &st);
		p->ex_rows += st.rows;
	}

	/*
	 * Follow the references until nothing more is left out.  Each round
	 * joins only the keys the previous round added (semi-naive evaluation),
	 * so a long chain costs rounds of small joins, not repeated full ones.
	 */
	for (round = 0;; round++)
	{
		bool		changed = false;

		values[2] = Int32GetDatum(round);
		foreach(lc, fkeys)
		{
			SyncForeignKey *fk = lfirst(lc);
			SyncClosureTable *c = tables[fk->child];
			SyncClosureTable *p = tables[fk->parent];
			int			n;

			CHECK_FOR_INTERRUPTS();
			if (p->ex_rows == 0)
				continue;
			n = SyncExecuteSnapshot(psprintf("INSERT INTO %s"
											 " SELECT c.%s, $3 + 1 FROM %s c"
											 " JOIN %s p ON %s"
											 " JOIN %s e ON e.key = p.%s AND e.round = $3"
											 " WHERE c.%s BETWEEN $1 AND $2"
											 " ON CONFLICT DO NOTHING",
											 c->ex_table, c->key, c->from,
											 p->from, fk->join_sql,
											 p->ex_table, p->key, c->key),
									3, argtypes, values, NULL, snapshot);
			if (n > 0)
			{
				c->ex_rows += n;
				changed = true;
			}
		}
		if (!changed)
			break;
	}
}
