/*-------------------------------------------------------------------------
 *
 * tables.c
 *		Registering the tables that take part in sync (sync_table): every
 *		read and write of it.
 *
 * A registration says how to find the table's key (keys.c), which rows are
 * published (level column, filter) and how (anonymize rules), which other
 * tables' rows its rows need beyond foreign keys (depends_on), and what a
 * pull does with an incoming row whose unique values a row of another
 * machine holds (on_conflict).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "expr.h"
#include "fkeys.h"
#include "guard.h"
#include "keys.h"
#include "registry.h"
#include "sequences.h"
#include "tables.h"

PG_FUNCTION_INFO_V1(sync_add_table);
PG_FUNCTION_INFO_V1(sync_remove_table);


/*
 * The registered table must be an ordinary or partitioned table that the
 * current user owns.
 */
static void
CheckTableKind(Relation rel)
{
	char		kind = rel->rd_rel->relkind;

	if (kind != RELKIND_RELATION && kind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
				 errdetail("Only ordinary and partitioned tables can be registered for sync.")));
	if (rel->rd_rel->relispartition)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a partition", RelationGetRelationName(rel)),
				 errdetail("A partition's rows are published through its partitioned table."),
				 errhint("Register the partitioned table instead.")));
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("temporary table \"%s\" cannot be registered for sync",
						RelationGetRelationName(rel))));
	SyncCheckTableOwner(RelationGetRelid(rel));
}

/*
 * The level column must be an integer column of the table, or one of a
 * domain over an integer type (through any number of domains), whose
 * constraints then hold as for any other column.
 */
static void
CheckLevelColumn(Relation rel, const char *column)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), column);
	Oid			atttype;
	Oid			base;

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("level column \"%s\" of table %s does not exist",
						column, SyncRelationName(RelationGetRelid(rel)))));
	atttype = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid;
	base = getBaseType(atttype);
	if (base != INT2OID && base != INT4OID && base != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("level column \"%s\" of table %s has type %s",
						column, SyncRelationName(RelationGetRelid(rel)),
						format_type_be(atttype)),
				 errdetail("An access level is an integer from 0 (private) to 4 (public).")));
}

/* the columns of sync_table a registration is read from */
#define REGISTRATION_COLUMNS \
	"tbl, key_column::text, key_declared, level_column::text, filter, anonymize," \
	" depends_on::pg_catalog.oid[], on_conflict = 'skip'"

/* Read a registration from row of the last SPI result. */
static void
RegistrationFromRow(int row, SyncRegisteredTable *reg)
{
	bool		isnull;
	Datum		d;

	memset(reg, 0, sizeof(*reg));
	reg->relid = SyncGetOid(row, 1);
	reg->key_column = SyncGetText(row, 2);
	reg->key_declared = SyncGetBool(row, 3);
	reg->level_column = SyncGetText(row, 4);
	reg->filter = SyncGetText(row, 5);
	d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 6, &isnull);
	reg->anonymize = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, 7, &isnull);
	if (!isnull)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			i;

		deconstruct_array(DatumGetArrayTypeP(d), OIDOID, sizeof(Oid), true,
						  TYPALIGN_INT, &elems, &nulls, &reg->ndepends);
		reg->depends_on = palloc(sizeof(Oid) * (reg->ndepends + 1));
		for (i = 0; i < reg->ndepends; i++)
			reg->depends_on[i] = DatumGetObjectId(elems[i]);
	}
	reg->skip_conflicts = SyncGetBool(row, 8);
}

/*
 * The registrations of all tables, in order of their names.  The caller is
 * connected to SPI.
 */
SyncRegisteredTable *
SyncTableRegistrations(int *ntables)
{
	SyncRegisteredTable *tables;
	int			n;
	int			i;

	n = SyncExecute(psprintf("SELECT " REGISTRATION_COLUMNS " FROM %s ORDER BY tbl::text",
							 SyncObject("sync_table")),
					0, NULL, NULL, NULL);
	tables = palloc0(sizeof(SyncRegisteredTable) * (n + 1));
	for (i = 0; i < n; i++)
		RegistrationFromRow(i, &tables[i]);
	*ntables = n;
	return tables;
}

/*
 * The registration of a table; false if it is not registered.  The caller
 * is connected to SPI.
 */
bool
SyncLookupRegistration(Oid relid, SyncRegisteredTable *reg)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	if (!OidIsValid(relid) ||
		SyncExecute(psprintf("SELECT " REGISTRATION_COLUMNS " FROM %s WHERE tbl = $1",
							 SyncObject("sync_table")),
					1, argtypes, values, NULL) == 0)
		return false;
	RegistrationFromRow(0, reg);
	return true;
}

/*
 * The key column of a registered table, as its registration says to find
 * it (checked against the table as it is now).
 */
AttrNumber
SyncRegisteredKey(Relation rel, const SyncRegisteredTable *reg)
{
	bool		is_declared;

	return SyncTableKey(rel, reg->key_declared ? reg->key_column : NULL,
						&is_declared);
}

/*
 * All registered tables with their key columns, in a stable order, each
 * locked in lockmode.  A primary key is read from the table now, not from
 * the registration, so a renamed column is followed.  The caller is
 * connected to SPI; returns the number of tables.
 */
int
SyncRegisteredTables(LOCKMODE lockmode, Oid **relids, char ***keys)
{
	int			n;
	int			i;
	SyncRegisteredTable *regs = SyncTableRegistrations(&n);

	*relids = palloc(sizeof(Oid) * (n + 1));
	*keys = palloc(sizeof(char *) * (n + 1));
	for (i = 0; i < n; i++)
	{
		Relation	rel = table_open(regs[i].relid, lockmode);
		AttrNumber	key = SyncRegisteredKey(rel, &regs[i]);

		(*relids)[i] = regs[i].relid;
		(*keys)[i] = pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel), key - 1)->attname));
		table_close(rel, NoLock);
	}
	return n;
}

/*
 * The dependencies that registrations declare among the tables of relids
 * (depends_on), as SyncForeignKey entries without columns: the child needs
 * the parent's rows first.
 */
List *
SyncDeclaredDependencies(const SyncRegisteredTable *regs, int nregs,
						 const Oid *relids, int n)
{
	List	   *deps = NIL;
	int			r;
	int			i;
	int			j;

	for (r = 0; r < nregs; r++)
		for (j = 0; j < regs[r].ndepends; j++)
		{
			int			child = -1;
			int			parent = -1;

			for (i = 0; i < n; i++)
			{
				if (OidIsValid(relids[i]) && relids[i] == regs[r].relid)
					child = i;
				if (OidIsValid(relids[i]) && relids[i] == regs[r].depends_on[j])
					parent = i;
			}
			if (child >= 0 && parent >= 0)
			{
				SyncForeignKey *dep = palloc0(sizeof(SyncForeignKey));

				dep->child = child;
				dep->parent = parent;
				dep->declared = true;
				deps = lappend(deps, dep);
			}
		}
	return deps;
}

/*
 * Everything that orders the tables of relids: their foreign keys and the
 * dependencies their registrations declare.  The caller is connected to
 * SPI.
 */
List *
SyncTableDependencies(const Oid *relids, int n)
{
	int			nregs;
	SyncRegisteredTable *regs = SyncTableRegistrations(&nregs);

	return list_concat(SyncForeignKeysAmong(relids, n),
					   SyncDeclaredDependencies(regs, nregs, relids, n));
}

/*
 * Follow dependencies from table from, looking for table to (depth first);
 * on the way back, put the tables of the path found into path.
 */
static bool
FindPath(List *deps, int from, int to, bool *visited, List **path)
{
	ListCell   *lc;

	if (from == to)
		return true;
	visited[from] = true;
	foreach(lc, deps)
	{
		SyncForeignKey *dep = lfirst(lc);

		if (dep->child != from || dep->parent == from || visited[dep->parent])
			continue;
		if (FindPath(deps, dep->parent, to, visited, path))
		{
			*path = lcons(dep, *path);
			return true;
		}
	}
	return false;
}

/*
 * The declared dependencies of relid (depends_on) must be registered
 * tables other than itself, and no cycle may run through them: rows of
 * each table of a cycle would have to arrive before those of the next.
 * Cycles of foreign keys alone are applied (see apply.c); a declared
 * dependency gives no column to break one with.  The caller is connected to
 * SPI.
 */
static void
CheckDependencies(Oid relid, const Oid *depends_on, int ndepends)
{
	int			nregs;
	SyncRegisteredTable *regs = SyncTableRegistrations(&nregs);
	Oid		   *relids = palloc(sizeof(Oid) * (nregs + 2));
	List	   *deps;
	ListCell   *lc;
	int			n = 0;
	int			self = -1;
	int			i;

	for (i = 0; i < ndepends; i++)
	{
		if (depends_on[i] == relid)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("table %s cannot depend on itself", SyncRelationName(relid))));
	}
	for (i = 0; i < nregs; i++)
	{
		if (regs[i].relid == relid)
		{
			/* this registration's dependencies are the new ones */
			regs[i].depends_on = (Oid *) depends_on;
			regs[i].ndepends = ndepends;
			self = n;
		}
		relids[n++] = regs[i].relid;
	}
	if (self < 0)
	{
		SyncRegisteredTable *grown = palloc0(sizeof(SyncRegisteredTable) * (nregs + 1));

		memcpy(grown, regs, sizeof(SyncRegisteredTable) * nregs);
		grown[nregs].relid = relid;
		grown[nregs].depends_on = (Oid *) depends_on;
		grown[nregs].ndepends = ndepends;
		regs = grown;
		nregs++;
		self = n;
		relids[n++] = relid;
	}
	for (i = 0; i < ndepends; i++)
	{
		int			j;
		bool		registered = false;

		for (j = 0; j < n; j++)
			registered |= (j != self && relids[j] == depends_on[i]);
		if (!registered)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("table %s in depends_on is not registered for sync",
							SyncRelationName(depends_on[i])),
					 errhint("Register it with sync_add_table() first.")));
	}

	deps = list_concat(SyncForeignKeysAmong(relids, n),
					   SyncDeclaredDependencies(regs, nregs, relids, n));
	foreach(lc, deps)
	{
		SyncForeignKey *dep = lfirst(lc);
		bool	   *visited = palloc0(sizeof(bool) * (n + 1));
		List	   *path = NIL;
		StringInfoData cycle;
		ListCell   *c;

		if (!dep->declared || !FindPath(deps, dep->parent, dep->child, visited, &path))
			continue;
		path = lcons(dep, path);
		initStringInfo(&cycle);
		appendStringInfoString(&cycle, SyncRelationName(relids[dep->child]));
		foreach(c, path)
		{
			SyncForeignKey *step = lfirst(c);

			appendStringInfo(&cycle, " -> %s (%s)", SyncRelationName(relids[step->parent]),
							 step->declared ? "depends_on" : psprintf("foreign key %s", step->name));
		}
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("dependencies of table %s would form a cycle",
						SyncRelationName(relid)),
				 errdetail("Each table needs the rows of the next first: %s.", cycle.data),
				 errhint("No order satisfies them all; leave a table of the cycle out of depends_on.")));
	}
}

/* The depends_on argument, as registered tables' OIDs without repeats. */
static Oid *
DependsOnArg(ArrayType *array, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	Oid		   *oids;
	int			count;
	int			i;
	int			j;

	deconstruct_array(array, REGCLASSOID, sizeof(Oid), true, TYPALIGN_INT,
					  &elems, &nulls, &count);
	oids = palloc(sizeof(Oid) * (count + 1));
	*n = 0;
	for (i = 0; i < count; i++)
	{
		bool		seen = false;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("depends_on must not contain NULL")));
		for (j = 0; j < *n; j++)
			seen |= (oids[j] == DatumGetObjectId(elems[i]));
		if (!seen)
			oids[(*n)++] = DatumGetObjectId(elems[i]);
	}
	return oids;
}

/* the values of on_conflict and foreign_rows, the default first */
static const char *const on_conflict_choices[2] = {"error", "skip"};
static const char *const foreign_rows_choices[2] = {"read-only", "writable"};

/*
 * A text argument that takes one of two values (choices[0], the default
 * for NULL, or choices[1]); what says what each means goes in the error's
 * DETAIL.
 */
static const char *
ChoiceArg(FunctionCallInfo fcinfo, int argno, const char *name,
		  const char *const choices[2], const char *detail)
{
	char	   *value = PG_ARGISNULL(argno) ? (char *) choices[0] :
		text_to_cstring(PG_GETARG_TEXT_PP(argno));

	if (strcmp(value, choices[0]) != 0 && strcmp(value, choices[1]) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\"", name, value),
				 errdetail("%s", detail),
				 errhint("Give '%s' or '%s'.", choices[0], choices[1])));
	return value;
}

/*
 * Check a table and the options of its registration; returns its key
 * column, and sets is_declared when the key is a named column.
 */
static char *
CheckRegistration(Oid relid, const char *key_column, const char *level_column,
				  const char *filter, Jsonb *anonymize, bool *is_declared)
{
	Relation	rel;
	AttrNumber	key_attnum;
	char	   *key;

	/*
	 * Keep the table's definition stable while we look at it, and its keys
	 * too while its sequences are positioned after the highest one.
	 */
	rel = table_open(relid, ShareLock);
	CheckTableKind(rel);
	key_attnum = SyncTableKey(rel, key_column, is_declared);
	key = pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel), key_attnum - 1)->attname));
	if (level_column != NULL)
		CheckLevelColumn(rel, level_column);
	if (filter != NULL)
		(void) SyncFilterSql(rel, filter, NULL);
	if (anonymize != NULL)
		(void) SyncAnonymizeSql(rel, key_attnum, anonymize, NULL);
	table_close(rel, NoLock);
	return key;
}

/*
 * sync_add_table(tbl, level_column, filter, anonymize, key_column,
 *				  depends_on, on_conflict, foreign_rows) returns sync_table
 *
 * Register a table, or change the registration of one already registered.
 * Everything is validated first; the table gets its guard (guard.c); once
 * the local identity is set, the sequences feeding the key are confined to
 * the local range, and the rows the table already holds beyond this
 * server's own are reported, by owner.
 */
Datum
sync_add_table(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *key_column;
	bool		key_declared;
	char	   *level_column = PG_ARGISNULL(1) ? NULL : pstrdup(NameStr(*PG_GETARG_NAME(1)));
	char	   *filter = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Jsonb	   *anonymize = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	char	   *named_key = PG_ARGISNULL(4) ? NULL : pstrdup(NameStr(*PG_GETARG_NAME(4)));
	Oid		   *depends_on = NULL;
	int			ndepends = 0;
	const char *on_conflict;
	const char *foreign_rows;
	SyncMachine local;
	Oid			argtypes[9] = {REGCLASSOID, NAMEOID, NAMEOID, TEXTOID, JSONBOID, BOOLOID,
	OIDARRAYOID, TEXTOID, TEXTOID};
	Datum		values[9];
	char		nulls[9] = "         ";
	Datum	   *oids;
	Datum		result;
	int			save_nestlevel;
	int			i;

	SyncEnter(fcinfo);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be null")));
	relid = PG_GETARG_OID(0);
	if (!PG_ARGISNULL(5))
		depends_on = DependsOnArg(PG_GETARG_ARRAYTYPE_P(5), &ndepends);
	on_conflict = ChoiceArg(fcinfo, 6, "on_conflict", on_conflict_choices,
							"An incoming row whose unique values a row of another machine holds fails the pull ('error') or is left out of it ('skip').");
	foreign_rows = ChoiceArg(fcinfo, 7, "foreign_rows", foreign_rows_choices,
							 "Rows of other machines in the table are copies that only a pull of their owner changes ('read-only'), or that may also be changed here until that pull puts the owner's version back ('writable').");
	key_column = CheckRegistration(relid, named_key, level_column, filter,
								   anonymize, &key_declared);

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	CheckDependencies(relid, depends_on, ndepends);

	oids = palloc(sizeof(Datum) * (ndepends + 1));
	for (i = 0; i < ndepends; i++)
		oids[i] = ObjectIdGetDatum(depends_on[i]);
	values[0] = ObjectIdGetDatum(relid);
	values[1] = DirectFunctionCall1(namein, CStringGetDatum(key_column));
	values[2] = level_column ? DirectFunctionCall1(namein, CStringGetDatum(level_column)) : (Datum) 0;
	nulls[2] = level_column ? ' ' : 'n';
	values[3] = filter ? CStringGetTextDatum(filter) : (Datum) 0;
	nulls[3] = filter ? ' ' : 'n';
	values[4] = anonymize ? JsonbPGetDatum(anonymize) : (Datum) 0;
	nulls[4] = anonymize ? ' ' : 'n';
	values[5] = BoolGetDatum(key_declared);
	values[6] = PointerGetDatum(construct_array(oids, ndepends, OIDOID, sizeof(Oid),
												true, TYPALIGN_INT));
	values[7] = CStringGetTextDatum(on_conflict);
	values[8] = CStringGetTextDatum(foreign_rows);
	SyncExecute(psprintf("INSERT INTO %s AS t (tbl, key_column, level_column, filter, anonymize,"
						 "                     key_declared, depends_on, on_conflict, foreign_rows)"
						 " VALUES ($1, $2, $3, $4, $5, $6, $7::pg_catalog.regclass[], $8, $9)"
						 " ON CONFLICT (tbl) DO UPDATE SET"
						 "   key_column = EXCLUDED.key_column,"
						 "   level_column = EXCLUDED.level_column,"
						 "   filter = EXCLUDED.filter, anonymize = EXCLUDED.anonymize,"
						 "   key_declared = EXCLUDED.key_declared,"
						 "   depends_on = EXCLUDED.depends_on, on_conflict = EXCLUDED.on_conflict,"
						 "   foreign_rows = EXCLUDED.foreign_rows, updated_at = pg_catalog.now()"
						 " RETURNING *",
						 SyncObject("sync_table")),
				9, argtypes, values, nulls);
	result = SyncReturnRow(0);

	if (SyncLocalMachine(&local))
	{
		SyncConfineTableSequences(relid, key_column, &local.range);
		SyncReportForeignRows(relid, key_column, &local.range,
							  strcmp(foreign_rows, "writable") == 0);
	}
	SyncGuardInstall(relid, key_column);

	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_DATUM(result);
}

/*
 * sync_remove_table(tbl) returns sync_table
 *
 * Unregister a table and return its former registration.  The table, its
 * rows and its sequences are left as they are.  A table that another
 * registration depends on stays until that dependency is gone.
 */
Datum
sync_remove_table(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	Datum		result;
	int			save_nestlevel;

	SyncEnter(fcinfo);
	if (get_rel_name(relid) != NULL)
		SyncCheckTableOwner(relid);
	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	if (SyncExecute(psprintf("SELECT tbl FROM %s WHERE $1 = ANY (depends_on) ORDER BY tbl::text LIMIT 1",
							 SyncObject("sync_table")),
					1, argtypes, values, NULL) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("table %s is in depends_on of table %s",
						SyncRelationName(relid), SyncRelationName(SyncGetOid(0, 1))),
				 errhint("Register table %s again without it in depends_on first.",
						 SyncRelationName(SyncGetOid(0, 1)))));
	if (SyncExecute(psprintf("DELETE FROM %s WHERE tbl = $1 RETURNING *",
							 SyncObject("sync_table")),
					1, argtypes, values, NULL) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table %s is not registered for sync",
						SyncRelationName(relid)),
				 errhint("Registered tables are listed in sync_table.")));
	result = SyncReturnRow(0);
	SyncGuardRemove(relid);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_DATUM(result);
}
