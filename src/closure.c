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
#include "utils/array.h"
#include "utils/builtins.h"

#include "dump.h"

/* A foreign key from child to parent, both registered. */
typedef struct ClosureEdge
{
	int			child;			/* index into tables */
	int			parent;
	char	   *join_sql;		/* c.col = p.col AND ... */
} ClosureEdge;

static int
TableIndex(DumpTable *tables, int ntables, Oid relid)
{
	int			i;

	for (i = 0; i < ntables; i++)
		if (tables[i].relid == relid)
			return i;
	return -1;
}

/*
 * The foreign keys between registered tables.
 */
static List *
ClosureEdges(DumpTable *tables, int ntables)
{
	Datum	   *oids = palloc(sizeof(Datum) * ntables);
	ArrayType  *array;
	Oid			argtypes[1] = {OIDARRAYOID};
	Datum		values[1];
	List	   *edges = NIL;
	int			n;
	int			i;

	for (i = 0; i < ntables; i++)
		oids[i] = ObjectIdGetDatum(tables[i].relid);
	array = construct_array(oids, ntables, OIDOID, sizeof(Oid), true, TYPALIGN_INT);
	values[0] = PointerGetDatum(array);

	n = SyncExecute("SELECT c.conrelid, c.confrelid, " SYNC_FK_JOIN_SQL("c", "p")
					"  FROM pg_catalog.pg_constraint c"
					" WHERE c.contype = 'f' AND c.conparentid = 0"
					"   AND c.conrelid = ANY ($1) AND c.confrelid = ANY ($1)"
					" ORDER BY c.conrelid, c.conname",
					1, argtypes, values, NULL);
	for (i = 0; i < n; i++)
	{
		ClosureEdge *edge = palloc(sizeof(ClosureEdge));

		edge->child = TableIndex(tables, ntables, SyncGetOid(i, 1));
		edge->parent = TableIndex(tables, ntables, SyncGetOid(i, 2));
		edge->join_sql = SyncGetText(i, 3);
		edges = lappend(edges, edge);
	}
	return edges;
}

/*
 * Compute which local rows each table leaves out because of a reference to
 * a left-out row; sets ex_table and ex_rows of the tables concerned.  All
 * queries see snapshot.  The caller is connected to SPI.
 */
void
SyncDumpClosure(DumpTable *tables, int ntables, const SyncRange *range,
				int level, Snapshot snapshot)
{
	List	   *edges = ClosureEdges(tables, ntables);
	ListCell   *lc;
	Oid			argtypes[3] = {INT8OID, INT8OID, INT4OID};
	Datum		values[3] = {Int64GetDatum(range->start), Int64GetDatum(range->end),
	Int32GetDatum(level)};
	bool	   *seeded = palloc0(sizeof(bool) * ntables);
	int			round;

	if (edges == NIL)
		return;

	/* a key table for every table on either end of a foreign key */
	foreach(lc, edges)
	{
		ClosureEdge *edge = lfirst(lc);
		int			ends[2] = {edge->child, edge->parent};
		int			e;

		for (e = 0; e < 2; e++)
		{
			DumpTable  *t = &tables[ends[e]];

			if (t->ex_table)
				continue;
			t->ex_table = psprintf("pg_temp.sync_dump_excluded_%d", ends[e] + 1);
			SyncExecute(psprintf("CREATE TEMP TABLE %s (key bigint PRIMARY KEY, round integer NOT NULL)",
								 strchr(t->ex_table, '.') + 1),
						0, NULL, NULL, NULL);
			t->ex_rows = 0;
		}
	}

	/* seed: the parents' own left-out rows */
	foreach(lc, edges)
	{
		ClosureEdge *edge = lfirst(lc);
		DumpTable  *p = &tables[edge->parent];

		if (seeded[edge->parent] || strcmp(p->keep_sql, "true") == 0)
			continue;
		seeded[edge->parent] = true;
		p->ex_rows += SyncExecuteSnapshot(psprintf("INSERT INTO %s"
												   " SELECT t.%s, 0 FROM %s t"
												   " WHERE t.%s BETWEEN $1 AND $2 AND NOT (%s)"
												   " ON CONFLICT DO NOTHING",
												   p->ex_table, p->key, p->from,
												   p->key, p->keep_sql),
										  3, argtypes, values, NULL, snapshot);
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
		foreach(lc, edges)
		{
			ClosureEdge *edge = lfirst(lc);
			DumpTable  *c = &tables[edge->child];
			DumpTable  *p = &tables[edge->parent];
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
											 p->from, edge->join_sql,
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

/*
 * Order tables so that every table comes after the tables it references
 * (parents first), keeping the given order among independent tables; the
 * tables of a reference cycle keep their given order.  Subscribers apply
 * archives in this order.  The caller is connected to SPI.
 */
void
SyncSortTablesByReferences(DumpTable *tables, int ntables)
{
	List	   *edges = ClosureEdges(tables, ntables);
	DumpTable  *sorted = palloc(sizeof(DumpTable) * ntables);
	bool	   *placed = palloc0(sizeof(bool) * ntables);
	int			n = 0;

	while (n < ntables)
	{
		int			pick = -1;
		int			i;

		/* the first table all of whose parents are placed */
		for (i = 0; i < ntables && pick < 0; i++)
		{
			ListCell   *lc;
			bool		ready = !placed[i];

			foreach(lc, edges)
			{
				ClosureEdge *edge = lfirst(lc);

				if (ready && edge->child == i && edge->parent != i &&
					!placed[edge->parent])
					ready = false;
			}
			if (ready)
				pick = i;
		}
		/* a cycle: take the first table not placed yet */
		for (i = 0; i < ntables && pick < 0; i++)
			if (!placed[i])
				pick = i;
		placed[pick] = true;
		sorted[n++] = tables[pick];
	}
	memcpy(tables, sorted, sizeof(DumpTable) * ntables);
}
