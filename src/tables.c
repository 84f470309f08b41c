/*-------------------------------------------------------------------------
 *
 * tables.c
 *		Registering the tables that take part in sync (sync_table).
 *
 * A registered table has a single-column integer primary key: keys are what
 * ranges partition, so a key decides which machine owns a row.
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
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "expr.h"
#include "registry.h"
#include "sequences.h"
#include "tables.h"

PG_FUNCTION_INFO_V1(sync_add_table);
PG_FUNCTION_INFO_V1(sync_remove_table);

/*
 * Only the owner of a table may register or unregister it (sync changes its
 * sequences, as only its owner may).
 */
static void
CheckTableOwner(Oid relid)
{
#if PG_VERSION_NUM >= 160000
	if (!object_ownercheck(RelationRelationId, relid, GetUserId()))
#else
	if (!pg_class_ownercheck(relid, GetUserId()))
#endif
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
}

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
	CheckTableOwner(RelationGetRelid(rel));
}

/*
 * Find the table's key: its primary key must be one column of type integer
 * or bigint.  Returns the column's number.
 */
AttrNumber
SyncKeyColumn(Relation rel)
{
	Oid			pk;
	HeapTuple	tup;
	Form_pg_index index;
	AttrNumber	attnum;
	Oid			atttype;

#if PG_VERSION_NUM >= 180000
	pk = RelationGetPrimaryKeyIndex(rel, false);
#else
	pk = RelationGetPrimaryKeyIndex(rel);
#endif
	if (!OidIsValid(pk))
	{
		List	   *indexes = RelationGetIndexList(rel);
		ListCell   *lc;

		foreach(lc, indexes)
		{
			HeapTuple	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
			bool		deferrable;

			if (!HeapTupleIsValid(itup))
				continue;
			deferrable = ((Form_pg_index) GETSTRUCT(itup))->indisprimary &&
				!((Form_pg_index) GETSTRUCT(itup))->indimmediate;
			ReleaseSysCache(itup);
			if (deferrable)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						 errmsg("primary key of table %s is deferrable",
								SyncRelationName(RelationGetRelid(rel))),
						 errdetail("Sync needs a primary key that is checked immediately.")));
		}
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table %s has no primary key",
						SyncRelationName(RelationGetRelid(rel))),
				 errdetail("Sync identifies rows by a single-column integer primary key."),
				 errhint("Add one with ALTER TABLE ... ADD PRIMARY KEY.")));
	}

	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pk));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for index %u", pk);
	index = (Form_pg_index) GETSTRUCT(tup);
	if (index->indnkeyatts != 1)
	{
		int			n = index->indnkeyatts;

		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("primary key of table %s has %d columns",
						SyncRelationName(RelationGetRelid(rel)), n),
				 errdetail("Sync identifies rows by a single-column integer primary key.")));
	}
	attnum = index->indkey.values[0];
	ReleaseSysCache(tup);

	atttype = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid;
	if (atttype != INT4OID && atttype != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("primary key column \"%s\" of table %s has type %s",
						get_attname(RelationGetRelid(rel), attnum, false),
						SyncRelationName(RelationGetRelid(rel)),
						format_type_be(atttype)),
				 errdetail("Sync identifies rows by a primary key of type integer or bigint, which key ranges partition.")));
	return attnum;
}

/*
 * The level column must be an integer column of the table.
 */
static void
CheckLevelColumn(Relation rel, const char *column)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), column);
	Oid			atttype;

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("level column \"%s\" of table %s does not exist",
						column, SyncRelationName(RelationGetRelid(rel)))));
	atttype = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid;
	if (atttype != INT2OID && atttype != INT4OID && atttype != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("level column \"%s\" of table %s has type %s",
						column, SyncRelationName(RelationGetRelid(rel)),
						format_type_be(atttype)),
				 errdetail("An access level is an integer from 0 (private) to 4 (public).")));
}

/*
 * sync_add_table(tbl, level_column, filter, anonymize) returns sync_table
 *
 * Register a table, or change the registration of one already registered.
 * Everything is validated first; once the local identity is set, the
 * sequences feeding the key are confined to the local range.
 */
Datum
sync_add_table(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	AttrNumber	key_attnum;
	char	   *key_column;
	char	   *level_column = NULL;
	char	   *filter = NULL;
	Jsonb	   *anonymize = NULL;
	SyncMachine local;
	Oid			argtypes[5] = {REGCLASSOID, NAMEOID, NAMEOID, TEXTOID, JSONBOID};
	Datum		values[5];
	char		nulls[5] = "     ";
	char	   *sql;
	Datum		result;
	int			save_nestlevel;

	SyncEnter(fcinfo);
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be null")));
	relid = PG_GETARG_OID(0);
	if (!PG_ARGISNULL(1))
		level_column = pstrdup(NameStr(*PG_GETARG_NAME(1)));
	if (!PG_ARGISNULL(2))
		filter = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (!PG_ARGISNULL(3))
		anonymize = PG_GETARG_JSONB_P(3);

	/*
	 * Keep the table's definition stable while we look at it, and its keys
	 * too while its sequences are positioned after the highest one.
	 */
	rel = table_open(relid, ShareLock);
	CheckTableKind(rel);
	key_attnum = SyncKeyColumn(rel);
	key_column = pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel), key_attnum - 1)->attname));
	if (level_column != NULL)
		CheckLevelColumn(rel, level_column);
	if (filter != NULL)
		(void) SyncFilterSql(rel, filter, NULL);
	if (anonymize != NULL)
		(void) SyncAnonymizeSql(rel, key_attnum, anonymize, NULL);
	table_close(rel, NoLock);

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();

	values[0] = ObjectIdGetDatum(relid);
	values[1] = DirectFunctionCall1(namein, CStringGetDatum(key_column));
	values[2] = level_column ? DirectFunctionCall1(namein, CStringGetDatum(level_column)) : (Datum) 0;
	nulls[2] = level_column ? ' ' : 'n';
	values[3] = filter ? CStringGetTextDatum(filter) : (Datum) 0;
	nulls[3] = filter ? ' ' : 'n';
	values[4] = anonymize ? JsonbPGetDatum(anonymize) : (Datum) 0;
	nulls[4] = anonymize ? ' ' : 'n';
	sql = psprintf("INSERT INTO %s AS t (tbl, key_column, level_column, filter, anonymize)"
				   " VALUES ($1, $2, $3, $4, $5)"
				   " ON CONFLICT (tbl) DO UPDATE SET"
				   "   key_column = EXCLUDED.key_column,"
				   "   level_column = EXCLUDED.level_column,"
				   "   filter = EXCLUDED.filter, anonymize = EXCLUDED.anonymize,"
				   "   updated_at = pg_catalog.now()"
				   " RETURNING *",
				   SyncObject("sync_table"));
	SyncExecute(sql, 5, argtypes, values, nulls);
	result = SyncReturnRow(0);

	if (SyncLocalMachine(&local))
		SyncConfineTableSequences(relid, key_column, &local.range);

	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_DATUM(result);
}

/*
 * sync_remove_table(tbl) returns sync_table
 *
 * Unregister a table and return its former registration.  The table, its
 * rows and its sequences are left as they are.
 */
Datum
sync_remove_table(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	char	   *sql;
	Datum		result;
	int			save_nestlevel;

	SyncEnter(fcinfo);
	if (get_rel_name(relid) != NULL)
		CheckTableOwner(relid);
	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	sql = psprintf("DELETE FROM %s WHERE tbl = $1 RETURNING *",
				   SyncObject("sync_table"));
	if (SyncExecute(sql, 1, argtypes, values, NULL) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table %s is not registered for sync",
						SyncRelationName(relid)),
				 errhint("Registered tables are listed in sync_table.")));
	result = SyncReturnRow(0);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_DATUM(result);
}

/*
 * All registered tables with their key columns, in a stable order, each
 * locked in lockmode.  The key column is read from the table's primary key
 * now, not from the registration, so a renamed column is followed.  The
 * caller is connected to SPI; returns the number of tables.
 */
int
SyncRegisteredTables(LOCKMODE lockmode, Oid **relids, char ***keys)
{
	int			n;
	int			i;

	n = SyncExecute(psprintf("SELECT tbl FROM %s ORDER BY tbl",
							 SyncObject("sync_table")),
					0, NULL, NULL, NULL);
	*relids = palloc(sizeof(Oid) * (n + 1));
	*keys = palloc(sizeof(char *) * (n + 1));
	for (i = 0; i < n; i++)
		(*relids)[i] = SyncGetOid(i, 1);
	for (i = 0; i < n; i++)
	{
		Relation	rel = table_open((*relids)[i], lockmode);
		AttrNumber	key = SyncKeyColumn(rel);

		(*keys)[i] = pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel), key - 1)->attname));
		table_close(rel, NoLock);
	}
	return n;
}

/*
 * The registrations of all tables, in order of their names, with what a
 * dump needs to know of each.  The caller is connected to SPI.
 */
SyncRegisteredTable *
SyncTableRegistrations(int *ntables)
{
	SyncRegisteredTable *tables;
	int			n;
	int			i;

	n = SyncExecute(psprintf("SELECT tbl, level_column::text, filter, anonymize"
							 "  FROM %s ORDER BY tbl::text",
							 SyncObject("sync_table")),
					0, NULL, NULL, NULL);
	tables = palloc0(sizeof(SyncRegisteredTable) * (n + 1));
	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d;

		tables[i].relid = SyncGetOid(i, 1);
		tables[i].level_column = SyncGetText(i, 2);
		tables[i].filter = SyncGetText(i, 3);
		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull);
		tables[i].anonymize = isnull ? NULL : DatumGetJsonbPCopy(d);
	}
	*ntables = n;
	return tables;
}

/*
 * Is the table registered?  The caller is connected to SPI.
 */
bool
SyncTableIsRegistered(Oid relid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	return OidIsValid(relid) &&
		SyncExecute(psprintf("SELECT 1 FROM %s WHERE tbl = $1", SyncObject("sync_table")),
					1, argtypes, values, NULL) > 0;
}
