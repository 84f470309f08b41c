/*-------------------------------------------------------------------------
 *
 * sequences.c
 *		Confining the sequences that feed registered tables' keys to the
 *		local machine's range.
 *
 * A confined sequence has MINVALUE and MAXVALUE set to the local range and
 * NO CYCLE, so it can never hand out a key that another machine owns: when
 * the range runs out, nextval() fails with PostgreSQL's own error.  It is
 * positioned after the highest key already used in the range, never back
 * onto a used key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "sequences.h"

/*
 * Number of rows of a table whose key lies in range but not in except
 * (except may be NULL).  The caller is connected to SPI.
 */
int64
SyncCountKeys(Oid relid, const char *key_column, const SyncRange *range,
			  const SyncRange *except)
{
	Oid			argtypes[4] = {INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		values[4];
	char		nulls[4] = "  nn";
	char	   *sql;
	int64		n = 0;

	values[0] = Int64GetDatum(range->start);
	values[1] = Int64GetDatum(range->end);
	if (except)
	{
		values[2] = Int64GetDatum(except->start);
		values[3] = Int64GetDatum(except->end);
		nulls[2] = nulls[3] = ' ';
	}
	sql = psprintf("SELECT pg_catalog.count(*) FROM %s WHERE %s BETWEEN $1 AND $2"
				   " AND ($3 IS NULL OR %s NOT BETWEEN $3 AND $4)",
				   SyncRelationName(relid), quote_identifier(key_column),
				   quote_identifier(key_column));
	SyncExecute(sql, 4, argtypes, values, nulls);
	SyncGetInt64(0, 1, &n);
	return n;
}

/*
 * Highest key of a table within range, or false if none is used.
 */
static bool
MaxKeyInRange(Oid relid, const char *key_column, const SyncRange *range,
			  int64 *max)
{
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2] = {Int64GetDatum(range->start), Int64GetDatum(range->end)};
	char	   *sql;

	sql = psprintf("SELECT pg_catalog.max(%s) FROM %s WHERE %s BETWEEN $1 AND $2",
				   quote_identifier(key_column), SyncRelationName(relid),
				   quote_identifier(key_column));
	SyncExecute(sql, 2, argtypes, values, NULL);
	return SyncGetInt64(0, 1, max);
}

/*
 * Confine one sequence to range and position it after used, the highest key
 * in use (has_used false: none), or after its own last value if that is
 * higher and inside the range.
 */
static void
ConfineSequence(Oid seqid, Oid relid, Oid key_type, const char *key_column,
				const SyncRange *range, bool has_used, int64 used)
{
	Oid			argtypes[2] = {REGCLASSOID, INT8OID};
	Datum		values[2];
	char	   *seqname = SyncRelationName(seqid);
	const char *as_type = "";
	Oid			seq_type;
	int64		last;

	values[0] = ObjectIdGetDatum(seqid);
	SyncExecute("SELECT seqtypid, pg_catalog.pg_sequence_last_value(seqrelid), seqincrement"
				"  FROM pg_catalog.pg_sequence WHERE seqrelid = $1",
				1, argtypes, values, NULL);
	if (SPI_processed != 1)
		elog(ERROR, "sequence %s not found in pg_sequence", seqname);
	seq_type = SyncGetOid(0, 1);
	if (SyncGetInt64(0, 2, &last) && last >= range->start && last <= range->end &&
		(!has_used || last > used))
	{
		used = last;
		has_used = true;
	}

	{
		int64		increment = 1;

		SyncGetInt64(0, 3, &increment);
		if (increment < 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("sequence %s of table %s counts down", seqname,
							SyncRelationName(relid)),
					 errdetail("Sync confines ascending sequences and places them after the highest key in use."),
					 errhint("Make it ascend with ALTER SEQUENCE %s INCREMENT BY %lld.",
							 seqname, (long long) -increment)));
	}
	if (key_type == INT8OID && seq_type != INT8OID)
		as_type = " AS bigint";
	else if (key_type == INT4OID && seq_type == INT2OID)
		as_type = " AS integer";

	SyncExecute(psprintf("ALTER SEQUENCE %s%s MINVALUE " INT64_FORMAT
						 " MAXVALUE " INT64_FORMAT " START WITH " INT64_FORMAT
						 " RESTART WITH " INT64_FORMAT " NO CYCLE",
						 seqname, as_type,
						 range->start, range->end, range->start, range->start),
				0, NULL, NULL, NULL);
	if (has_used)
	{
		values[1] = Int64GetDatum(used);
		SyncExecute("SELECT pg_catalog.setval($1, $2, true)",
					2, argtypes, values, NULL);
	}
}

/*
 * Confine every sequence feeding a registered table's key column to range.
 * The caller is connected to SPI.
 */
void
SyncConfineTableSequences(Oid relid, const char *key_column,
						  const SyncRange *range)
{
	Oid			argtypes[2] = {REGCLASSOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(relid), CStringGetTextDatum(key_column)};
	AttrNumber	attnum = get_attnum(relid, key_column);
	Oid			key_type = get_atttype(relid, attnum);
	int64		used = 0;
	bool		has_used;
	int			nseqs;
	Oid		   *seqs;
	int			i;

	/* no key may arrive while we look for the highest one */
	LockRelationOid(relid, ShareLock);

	/* the key column must be able to hold the local range at all */
	if ((key_type == INT4OID &&
		 (range->end > PG_INT32_MAX || range->start < PG_INT32_MIN)) ||
		(key_type == INT2OID &&
		 (range->end > PG_INT16_MAX || range->start < PG_INT16_MIN)))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("key column \"%s\" of table %s cannot hold the local range [" INT64_FORMAT ", " INT64_FORMAT "]",
						key_column, SyncRelationName(relid), range->start, range->end),
				 errdetail("The column is of type %s, whose largest value is %d.",
						   format_type_be(key_type),
						   key_type == INT2OID ? PG_INT16_MAX : PG_INT32_MAX),
				 errhint("Change the column to bigint with ALTER TABLE ... ALTER COLUMN ... TYPE bigint.")));

	nseqs = SyncExecute(psprintf("SELECT s::oid FROM %s($1, $2::name) s ORDER BY 1",
								 SyncObject("sync_key_sequences")),
						2, argtypes, values, NULL);
	if (nseqs == 0)
		return;
	seqs = palloc(sizeof(Oid) * nseqs);
	for (i = 0; i < nseqs; i++)
		seqs[i] = SyncGetOid(i, 1);

	has_used = MaxKeyInRange(relid, key_column, range, &used);
	for (i = 0; i < nseqs; i++)
		ConfineSequence(seqs[i], relid, key_type, key_column, range,
						has_used, used);
}
