/*-------------------------------------------------------------------------
 *
 * keys.c
 *		The key of a registered table.
 *
 * Keys are what ranges partition: a row's key decides which machine owns
 * it.  A table's key is its single-column integer primary key.  A table
 * without one (a link table keyed by an id filled from a sequence, with a
 * unique index on its pair of references, say) is registered with a key
 * the DBA names: a NOT NULL smallint, integer or bigint column.  Nothing
 * in the schema then says the key is unique; dumps and pulls check it
 * where it matters (SyncKeyIsUnique tells when they need not).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

#include "helpers.h"
#include "keys.h"

/* Is a key of this type one sync can use? */
static bool
KeyType(Oid type)
{
	return type == INT2OID || type == INT4OID || type == INT8OID;
}

/*
 * Has the table a primary key that is deferrable (which the relation
 * cache does not count as its primary key)?
 */
static bool
HasDeferrablePrimaryKey(Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		found = false;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));

		if (!HeapTupleIsValid(tup))
			continue;
		if (((Form_pg_index) GETSTRUCT(tup))->indisprimary &&
			!((Form_pg_index) GETSTRUCT(tup))->indimmediate)
			found = true;
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	return found;
}

/*
 * The column of the table's primary key, if it has one of one integer
 * column; else InvalidAttrNumber, or (report) an ERROR that says why not.
 */
static AttrNumber
PrimaryKeyColumn(Relation rel, bool report)
{
	Oid			pk;
	HeapTuple	tup;
	Form_pg_index index;
	int			ncolumns;
	AttrNumber	attnum;
	Oid			atttype;

#if PG_VERSION_NUM >= 180000
	pk = RelationGetPrimaryKeyIndex(rel, false);
#else
	pk = RelationGetPrimaryKeyIndex(rel);
#endif
	if (!OidIsValid(pk))
	{
		if (report && HasDeferrablePrimaryKey(rel))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("primary key of table %s is deferrable",
							SyncRelationName(RelationGetRelid(rel))),
					 errdetail("Sync needs a primary key that is checked immediately.")));
		if (report)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("table %s has no primary key",
							SyncRelationName(RelationGetRelid(rel))),
					 errdetail("Sync identifies rows by a single-column integer key."),
					 errhint("Name a NOT NULL integer column that identifies the rows with sync_add_table(..., key_column => ...).")));
		return InvalidAttrNumber;
	}

	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pk));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for index %u", pk);
	index = (Form_pg_index) GETSTRUCT(tup);
	ncolumns = index->indnkeyatts;
	attnum = index->indkey.values[0];
	ReleaseSysCache(tup);

	if (!report && (ncolumns != 1 ||
					!KeyType(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid)))
		return InvalidAttrNumber;
	if (ncolumns != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("primary key of table %s has %d columns",
						SyncRelationName(RelationGetRelid(rel)), ncolumns),
				 errdetail("Sync identifies rows by a single-column integer key."),
				 errhint("Name a NOT NULL integer column that identifies the rows with sync_add_table(..., key_column => ...).")));
	atttype = TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid;
	if (!KeyType(atttype))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("primary key column \"%s\" of table %s has type %s",
						get_attname(RelationGetRelid(rel), attnum, false),
						SyncRelationName(RelationGetRelid(rel)),
						format_type_be(atttype)),
				 errdetail("Sync identifies rows by a key of type smallint, integer or bigint, which key ranges partition."),
				 errhint("Name a NOT NULL integer column that identifies the rows with sync_add_table(..., key_column => ...).")));
	return attnum;
}

/*
 * A column the DBA named as the key: it must exist and be a NOT NULL
 * smallint, integer or bigint.
 */
static AttrNumber
DeclaredKeyColumn(Relation rel, const char *column)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), column);
	Form_pg_attribute att;

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("key column \"%s\" of table %s does not exist",
						column, SyncRelationName(RelationGetRelid(rel))),
				 errhint("A key named at registration is followed by its name: after renaming it, register the table again with sync_add_table(..., key_column => ...).")));
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	if (!KeyType(att->atttypid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("key column \"%s\" of table %s has type %s",
						column, SyncRelationName(RelationGetRelid(rel)),
						format_type_be(att->atttypid)),
				 errdetail("Sync identifies rows by a key of type smallint, integer or bigint, which key ranges partition.")));
	if (!att->attnotnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("key column \"%s\" of table %s allows NULL",
						column, SyncRelationName(RelationGetRelid(rel))),
				 errdetail("A row without a key would belong to no machine."),
				 errhint("Declare the column NOT NULL.")));
	return attnum;
}

/*
 * The key of a table: its primary key, or with declared the column of that
 * name (which must be the primary key's column if the table has a usable
 * primary key).  Sets is_declared when the key is a named column of a
 * table without a usable primary key.
 */
AttrNumber
SyncTableKey(Relation rel, const char *declared, bool *is_declared)
{
	AttrNumber	pk;
	AttrNumber	attnum;

	*is_declared = false;
	if (declared == NULL)
		return PrimaryKeyColumn(rel, true);
	attnum = DeclaredKeyColumn(rel, declared);
	pk = PrimaryKeyColumn(rel, false);
	if (pk != InvalidAttrNumber && pk != attnum)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table %s has a primary key, column \"%s\", which is its key",
						SyncRelationName(RelationGetRelid(rel)),
						get_attname(RelationGetRelid(rel), pk, false)),
				 errhint("Name a key column only for a table without a single-column integer primary key.")));
	*is_declared = (pk == InvalidAttrNumber);
	return attnum;
}

/*
 * Does an index say the key is unique: a valid, immediate, unique index on
 * the key column alone, without a predicate?
 */
bool
SyncKeyIsUnique(Relation rel, AttrNumber key)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	bool		unique = false;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tup))
			continue;
		index = (Form_pg_index) GETSTRUCT(tup);
		if (index->indisunique && index->indimmediate && index->indisvalid &&
			index->indnkeyatts == 1 && index->indkey.values[0] == key &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL))
			unique = true;
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	return unique;
}

/*
 * The first keys (up to five, as text: "3, 17") that occur more than once
 * among the rows of from (a qualified relation, or an alias-free FROM item)
 * with key between start and end, as snapshot sees them (InvalidSnapshot:
 * as a new statement would); NULL when there are none.  The caller is
 * connected to SPI and reports its own error.
 */
char *
SyncDuplicateKeys(const char *from, const char *key, int64 start, int64 end,
				  Snapshot snapshot)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(start), Int64GetDatum(end)};
	StringInfoData keys;
	int			n;
	int			i;

	n = SyncExecuteSnapshot(psprintf("SELECT x.%s FROM %s x WHERE x.%s BETWEEN $1 AND $2"
									 " GROUP BY x.%s HAVING pg_catalog.count(*) > 1"
									 " ORDER BY 1 LIMIT 5",
									 key, from, key, key),
							2, argtypes, values, NULL, snapshot);
	if (n == 0)
		return NULL;
	initStringInfo(&keys);
	for (i = 0; i < n; i++)
		appendStringInfo(&keys, "%s%s", i ? ", " : "", SyncGetText(i, 1));
	return keys.data;
}
