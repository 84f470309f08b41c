/*-------------------------------------------------------------------------
 *
 * fkeys.c
 *		Foreign keys among registered tables, and into them.
 *
 * A dump and a pull both need the foreign keys between registered tables,
 * and one order of them, parents first: the dump writes tables in that
 * order and follows the keys to leave out rows that reference left-out
 * rows (closure.c); the pull loads tables straight into place relying on
 * that order, merges staged tables in it and deletes in the reverse
 * (apply.c).  Both read them here, from the local catalog.
 *
 * Join conditions use each constraint's own equality operators, named with
 * their schemas, so they mean the same whatever the types and search_path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "fkeys.h"
#include "helpers.h"

/*
 * SQL of the join condition of the foreign key constraint c (a
 * pg_constraint row) between the referencing alias c and the referenced
 * alias p.
 */
#define FK_JOIN_SQL \
	"(SELECT pg_catalog.string_agg(pg_catalog.format('c.%I OPERATOR(%I.%s) p.%I'," \
	"         a1.attname, opn.nspname, op.oprname, a2.attname), ' AND ' ORDER BY k.i)" \
	"    FROM ROWS FROM (pg_catalog.unnest(c.conkey), pg_catalog.unnest(c.confkey)," \
	"                    pg_catalog.unnest(c.conpfeqop)) WITH ORDINALITY AS k(ck, pk, eqop, i)" \
	"    JOIN pg_catalog.pg_attribute a1 ON a1.attrelid = c.conrelid AND a1.attnum = k.ck" \
	"    JOIN pg_catalog.pg_attribute a2 ON a2.attrelid = c.confrelid AND a2.attnum = k.pk" \
	"    JOIN pg_catalog.pg_operator op ON op.oid = k.eqop" \
	"    JOIN pg_catalog.pg_namespace opn ON opn.oid = op.oprnamespace)"

/* SQL: the names of the columns numbered by array cols of relation rel */
#define COLUMN_NAMES_SQL(cols, rel) \
	"ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(" cols ") WITH ORDINALITY k(n, o)" \
	"        JOIN pg_catalog.pg_attribute a ON a.attrelid = " rel " AND a.attnum = k.n" \
	"       ORDER BY k.o)"

/* SQL: the equality operators of foreign key constraint c, in order */
#define OPERATORS_SQL \
	"ARRAY(SELECT pg_catalog.format('OPERATOR(%I.%s)', opn.nspname, op.oprname)" \
	"        FROM pg_catalog.unnest(c.conpfeqop) WITH ORDINALITY k(eqop, o)" \
	"        JOIN pg_catalog.pg_operator op ON op.oid = k.eqop" \
	"        JOIN pg_catalog.pg_namespace opn ON opn.oid = op.oprnamespace" \
	"       ORDER BY k.o)"

/*
 * SQL: the nearest of rel and its partition ancestors that is among the
 * tables $1, as a row (rel); none if there is none.  So a foreign key
 * declared on one partition counts as the registered table's.
 */
#define REGISTERED_ANCESTOR_SQL(rel) \
	"(SELECT x.a AS rel" \
	"   FROM (SELECT " rel ", 0::pg_catalog.int8" \
	"         UNION ALL" \
	"         SELECT a::pg_catalog.oid, o" \
	"           FROM pg_catalog.pg_partition_ancestors(" rel ") WITH ORDINALITY p(a, o)) x(a, o)" \
	"  WHERE x.a OPERATOR(pg_catalog.=) ANY ($1)" \
	"  ORDER BY x.o LIMIT 1)"

/* Position of relid in relids, or -1. */
static int
TableIndex(const Oid *relids, int n, Oid relid)
{
	int			i;

	for (i = 0; i < n; i++)
		if (OidIsValid(relids[i]) && relids[i] == relid)
			return i;
	return -1;
}

/*
 * The foreign keys between tables of relids (InvalidOid entries take no
 * part), as SyncForeignKey, in a stable order.  Keys declared on a
 * partitioned table are taken once, not again for each partition; a key
 * declared on one partition (or referencing one) is taken as its
 * registered ancestor's.  The caller is connected to SPI.
 */
List *
SyncForeignKeysAmong(const Oid *relids, int n)
{
	Datum	   *oids = palloc(sizeof(Datum) * (n + 1));
	Oid			argtypes[1] = {OIDARRAYOID};
	Datum		values[1];
	List	   *fkeys = NIL;
	int			rows;
	int			i;

	for (i = 0; i < n; i++)
		oids[i] = ObjectIdGetDatum(relids[i]);
	values[0] = PointerGetDatum(construct_array(oids, n, OIDOID, sizeof(Oid),
												true, TYPALIGN_INT));
	rows = SyncExecute("SELECT ch.rel, pa.rel, " FK_JOIN_SQL ","
					   "  " COLUMN_NAMES_SQL("c.conkey", "c.conrelid") ","
					   "  c.condeferrable,"
					   "  " COLUMN_NAMES_SQL("c.confkey", "c.confrelid") ","
					   "  " OPERATORS_SQL ","
					   "  pg_catalog.quote_ident(ns.nspname) OPERATOR(pg_catalog.||) '.'"
					   "    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.conname),"
					   "  NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a"
					   "               WHERE a.attrelid OPERATOR(pg_catalog.=) c.conrelid"
					   "                 AND a.attnum OPERATOR(pg_catalog.=) ANY (c.conkey) AND a.attnotnull)"
					   "  FROM pg_catalog.pg_constraint c"
					   "  JOIN pg_catalog.pg_namespace ns ON ns.oid = c.connamespace"
					   " CROSS JOIN LATERAL " REGISTERED_ANCESTOR_SQL("c.conrelid") " ch"
					   " CROSS JOIN LATERAL " REGISTERED_ANCESTOR_SQL("c.confrelid") " pa"
					   " WHERE c.contype = 'f' AND c.conparentid = 0"
					   " ORDER BY ch.rel, c.conname",
					   1, argtypes, values, NULL);
	for (i = 0; i < rows; i++)
	{
		SyncForeignKey *fk = palloc0(sizeof(SyncForeignKey));

		fk->child = TableIndex(relids, n, SyncGetOid(i, 1));
		fk->parent = TableIndex(relids, n, SyncGetOid(i, 2));
		fk->join_sql = SyncGetText(i, 3);
		fk->columns = SyncGetTextList(i, 4);
		fk->deferrable = SyncGetBool(i, 5);
		fk->parent_columns = SyncGetTextList(i, 6);
		fk->operators = SyncGetTextList(i, 7);
		fk->name = SyncGetText(i, 8);
		fk->nullable = SyncGetBool(i, 9);
		fkeys = lappend(fkeys, fk);
	}
	return fkeys;
}

/*
 * Can table i come before the parents not placed yet, its references to
 * them set later?  Only if those foreign keys allow NULL or are deferred.
 */
static bool
CanComeFirst(int i, List *fkeys, const bool *placed)
{
	ListCell   *lc;

	foreach(lc, fkeys)
	{
		SyncForeignKey *fk = lfirst(lc);

		if (fk->child == i && fk->parent != i && !placed[fk->parent] &&
			(fk->declared || !(fk->nullable || fk->deferrable)))
			return false;
	}
	return true;
}

/*
 * The tables of a list in an order where every table comes after the
 * tables it references (parents first), keeping the list's order among
 * independent tables.  In a reference cycle, the first table whose
 * references into the cycle allow NULL (or are deferrable) comes first;
 * failing that, the first in the list.  Only the tables include marks take
 * part (NULL: all); the others count as placed already.  Returns their
 * indexes, then -1.
 */
int *
SyncParentsFirst(int n, List *fkeys, const bool *include)
{
	int		   *order = palloc(sizeof(int) * (n + 1));
	bool	   *placed = palloc0(sizeof(bool) * (n + 1));
	int			count = 0;
	int			i;

	for (i = 0; i < n; i++)
		placed[i] = include && !include[i];
	for (;;)
	{
		int			pick = -1;

		/* the first table all of whose parents are placed */
		for (i = 0; i < n && pick < 0; i++)
		{
			ListCell   *lc;
			bool		ready = !placed[i];

			foreach(lc, fkeys)
			{
				SyncForeignKey *fk = lfirst(lc);

				if (ready && fk->child == i && fk->parent != i &&
					!placed[fk->parent])
					ready = false;
			}
			if (ready)
				pick = i;
		}
		/* a cycle: the first that can be written with its back references empty */
		for (i = 0; i < n && pick < 0; i++)
			if (!placed[i] && CanComeFirst(i, fkeys, placed))
				pick = i;
		for (i = 0; i < n && pick < 0; i++)
			if (!placed[i])
				pick = i;
		if (pick < 0)
			break;
		placed[pick] = true;
		order[count++] = pick;
	}
	order[count] = -1;
	return order;
}

/*
 * Every foreign key that references the table or one of its partitions,
 * from any table, as SyncReference.  The caller is connected to SPI.
 */
List *
SyncReferencesTo(Oid relid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	List	   *refs = NIL;
	int			rows;
	int			i;

	rows = SyncExecute("SELECT c.conrelid, " FK_JOIN_SQL ","
					   "  " COLUMN_NAMES_SQL("c.confkey", "c.confrelid") ","
					   "  " COLUMN_NAMES_SQL("c.conkey", "c.conrelid") ","
					   "  " OPERATORS_SQL
					   "  FROM pg_catalog.pg_constraint c"
					   " WHERE c.contype = 'f' AND c.conparentid = 0"
					   "   AND (c.confrelid = $1"
					   "        OR c.confrelid IN (SELECT relid FROM pg_catalog.pg_partition_tree($1)))",
					   1, argtypes, values, NULL);
	for (i = 0; i < rows; i++)
	{
		SyncReference *ref = palloc(sizeof(SyncReference));

		ref->child = SyncGetOid(i, 1);
		ref->join_sql = SyncGetText(i, 2);
		ref->columns = SyncGetTextList(i, 3);
		ref->child_columns = SyncGetTextList(i, 4);
		ref->operators = SyncGetTextList(i, 5);
		refs = lappend(refs, ref);
	}
	return refs;
}

/*
 * The join condition of a foreign key, from its columns, between a row of
 * its child (alias child) and of the table it references (alias parent).
 */
static char *
JoinSql(List *child_columns, List *parent_columns, List *operators,
		const char *child, const char *parent)
{
	StringInfoData sql;
	ListCell   *c;
	ListCell   *p;
	ListCell   *o;

	initStringInfo(&sql);
	forthree(c, child_columns, p, parent_columns, o, operators)
		appendStringInfo(&sql, "%s%s.%s %s %s.%s", sql.len ? " AND " : "",
						 child, quote_identifier(lfirst(c)), (char *) lfirst(o),
						 parent, quote_identifier(lfirst(p)));
	return sql.data;
}

/* The join condition of a reference, between aliases child and parent. */
char *
SyncReferenceJoin(SyncReference *ref, const char *child, const char *parent)
{
	return JoinSql(ref->child_columns, ref->columns, ref->operators, child, parent);
}

/* The join condition of a foreign key, between aliases child and parent. */
char *
SyncForeignKeyJoin(SyncForeignKey *fk, const char *child, const char *parent)
{
	return JoinSql(fk->columns, fk->parent_columns, fk->operators, child, parent);
}

/*
 * Does a column reference another table, or is it referenced, through a
 * foreign key?
 */
bool
SyncColumnInForeignKey(Oid relid, AttrNumber attnum)
{
	Oid			argtypes[2] = {OIDOID, INT2OID};
	Datum		values[2] = {ObjectIdGetDatum(relid), Int16GetDatum(attnum)};
	bool		found;

	SPI_connect();
	found = SyncExecute("SELECT 1 FROM pg_catalog.pg_constraint"
						" WHERE contype = 'f'"
						"   AND ((conrelid = $1 AND $2 = ANY (conkey))"
						"     OR (confrelid = $1 AND $2 = ANY (confkey)))",
						2, argtypes, values, NULL) > 0;
	SPI_finish();
	return found;
}
