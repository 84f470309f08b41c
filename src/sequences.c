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
 * The sequences of a key are found by reading its default expression as
 * PostgreSQL stores it: nextval() of a sequence given as a regclass
 * constant, or as text cast to regclass (as old pg_dump output has it,
 * which records no dependency), under casts; an identity column's own
 * sequence; and the sequence a serial column owns.  A default that does
 * anything else (calls another function, computes the sequence's name) is
 * refused when the table is registered: sync could not tell what keys it
 * hands out.  After ALTER TABLE or ALTER SEQUENCE the sequences of the
 * tables concerned are confined again (the event trigger
 * sync_reconfine_keys), so a new default or new bounds cannot escape
 * the range either.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/transam.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_attrdef.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "registry.h"
#include "sequences.h"

PG_FUNCTION_INFO_V1(sync_key_sequences);
PG_FUNCTION_INFO_V1(sync_reconfine_keys);

/* set while sync's own ALTER SEQUENCE runs (the event trigger ignores it) */
static bool confining = false;

/* What a default expression says about the sequences it uses. */
typedef struct DefaultReading
{
	Oid			relid;			/* the table */
	List	   *seqs;			/* OIDs of the sequences found */
	const char *why;			/* what could not be read, or NULL */
} DefaultReading;

/* Is node a call of a built-in function that is a cast? */
static bool
BuiltinCast(Node *node)
{
	FuncExpr   *f = (FuncExpr *) node;

	return IsA(node, FuncExpr) && f->funcid < FirstNormalObjectId &&
		(f->funcformat == COERCE_IMPLICIT_CAST || f->funcformat == COERCE_EXPLICIT_CAST) &&
		list_length(f->args) >= 1;
}

/* The expression under the casts, if node is one. */
static Node *
UnderCasts(Node *node)
{
	for (;;)
	{
		if (BuiltinCast(node))
			node = linitial(((FuncExpr *) node)->args);
		else if (IsA(node, RelabelType))
			node = (Node *) ((RelabelType *) node)->arg;
		else if (IsA(node, CoerceViaIO))
			node = (Node *) ((CoerceViaIO *) node)->arg;
		else
			return node;
	}
}

/*
 * The sequence nextval()'s argument names, without evaluating anything: a
 * regclass constant, or a text constant cast to regclass, whose name is
 * looked up now (an unqualified one in the schema of table relid, whatever
 * anyone's search_path).  InvalidOid if it is anything else, or names no
 * relation.
 */
static Oid
NamedSequence(Node *arg, Oid relid)
{
	Const	   *c;
	char	   *given;
	List	   *names;

	if (IsA(arg, Const) && exprType(arg) == REGCLASSOID)
		return ((Const *) arg)->constisnull ? InvalidOid :
			DatumGetObjectId(((Const *) arg)->constvalue);
	arg = UnderCasts(arg);
	if (!IsA(arg, Const))
		return InvalidOid;
	c = (Const *) arg;
	if (c->constisnull || (c->consttype != TEXTOID && c->consttype != VARCHAROID))
		return InvalidOid;
	given = TextDatumGetCString(c->constvalue);
	if (!SplitIdentifierString(given, '.', &names) ||
		list_length(names) < 1 || list_length(names) > 2)
		return InvalidOid;
	if (list_length(names) == 1)
		return get_relname_relid(linitial(names), get_rel_namespace(relid));
	return get_relname_relid(lsecond(names),
							 get_namespace_oid(linitial(names), true));
}

/*
 * Read a default expression: collect the sequences it draws keys from, or
 * say what sync cannot read.
 */
static void
ReadDefault(Node *node, DefaultReading *r)
{
	if (node == NULL || r->why)
		return;
	if (IsA(node, Const))
		return;
	if (IsA(node, NextValueExpr))
	{
		r->seqs = list_append_unique_oid(r->seqs, ((NextValueExpr *) node)->seqid);
		return;
	}
	if (IsA(node, FuncExpr) && ((FuncExpr *) node)->funcid == F_NEXTVAL)
	{
		Oid			seq = NamedSequence(linitial(((FuncExpr *) node)->args), r->relid);

		if (!OidIsValid(seq) || get_rel_relkind(seq) != RELKIND_SEQUENCE)
			r->why = "It calls nextval() on a sequence given by an expression, or by a name that is no sequence in the table's schema.";
		else
			r->seqs = list_append_unique_oid(r->seqs, seq);
		return;
	}
	if (BuiltinCast(node))
		ReadDefault(linitial(((FuncExpr *) node)->args), r);
	else if (IsA(node, RelabelType))
		ReadDefault((Node *) ((RelabelType *) node)->arg, r);
	else if (IsA(node, CoerceViaIO))
		ReadDefault((Node *) ((CoerceViaIO *) node)->arg, r);
	else if (IsA(node, CoerceToDomain))
		ReadDefault((Node *) ((CoerceToDomain *) node)->arg, r);
	else if (IsA(node, FuncExpr))
		r->why = psprintf("It calls %s, which could hand out any key.",
						  format_procedure(((FuncExpr *) node)->funcid));
	else
		r->why = "It is an expression other than nextval() of a sequence, which could hand out any key.";
}

/*
 * The default expression of a column as PostgreSQL stores it, or NULL; read
 * from the catalog, without locking the table (an event trigger reads the
 * defaults of every registered table).
 */
static Node *
ColumnDefault(Oid relid, AttrNumber attnum)
{
	Relation	attrdef = table_open(AttrDefaultRelationId, AccessShareLock);
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	Node	   *expr = NULL;

	ScanKeyInit(&keys[0], Anum_pg_attrdef_adrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	ScanKeyInit(&keys[1], Anum_pg_attrdef_adnum, BTEqualStrategyNumber,
				F_INT2EQ, Int16GetDatum(attnum));
	scan = systable_beginscan(attrdef, AttrDefaultIndexId, true, NULL, 2, keys);
	if (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		adbin = heap_getattr(tuple, Anum_pg_attrdef_adbin,
										 RelationGetDescr(attrdef), &isnull);

		if (!isnull)
			expr = stringToNode(TextDatumGetCString(adbin));
	}
	systable_endscan(scan);
	table_close(attrdef, AccessShareLock);
	return expr;
}

/*
 * The sequences feeding column key_column of relid (an OID list): those
 * its default draws from, and the one serial or identity ownership ties to
 * it.  A default sync cannot read fails with an error when strict, and is
 * passed over otherwise.
 */
static List *
KeySequences(Oid relid, const char *key_column, bool strict)
{
	AttrNumber	attnum = get_attnum(relid, key_column);
	DefaultReading r = {relid, NIL, NULL};
	Oid			owned;

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table %s does not exist",
						key_column, SyncRelationName(relid))));
	ReadDefault(ColumnDefault(relid, attnum), &r);
	if (r.why && strict)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot confine the default of key column \"%s\" of table %s",
						key_column, SyncRelationName(relid)),
				 errdetail("%s Sync confines the sequences a key draws from to the local range.", r.why),
				 errhint("Make the default nextval() of a sequence, as serial columns have it, or an identity column.")));
	owned = getIdentitySequence(relid, attnum, true);
	if (OidIsValid(owned))
		r.seqs = list_append_unique_oid(r.seqs, owned);
	{
		List	   *serial = getOwnedSequences(relid);
		ListCell   *lc;

		foreach(lc, serial)
		{
			Oid			seq = lfirst_oid(lc);
			int32		colno;

			if (sequenceIsOwned(seq, DEPENDENCY_AUTO, &relid, &colno) && colno == attnum)
				r.seqs = list_append_unique_oid(r.seqs, seq);
		}
	}
	return r.seqs;
}

/*
 * sync_key_sequences(tbl, key_column) returns setof regclass: the
 * sequences that feed the column (a default sync cannot read gives what
 * could be read).
 */
Datum
sync_key_sequences(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid = PG_GETARG_OID(0);
	char	   *column = NameStr(*PG_GETARG_NAME(1));
	List	   *seqs;
	ListCell   *lc;

	SyncEnter(fcinfo);
	SyncSetOfOids(fcinfo);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)) ||
		get_attnum(relid, column) == InvalidAttrNumber)
		return (Datum) 0;
	seqs = KeySequences(relid, column, false);
	foreach(lc, seqs)
	{
		Datum		value = ObjectIdGetDatum(lfirst_oid(lc));
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}

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

/* What ConfineBody confines. */
typedef struct ConfineRun
{
	Oid			relid;
	const char *key_column;
	Oid			key_type;
	const SyncRange *range;
	List	   *seqs;
} ConfineRun;

/* Confine the sequences of a ConfineRun (a SyncBody, run as the owner). */
static void
ConfineBody(void *arg)
{
	ConfineRun *run = (ConfineRun *) arg;
	int64		used = 0;
	bool		has_used = MaxKeyInRange(run->relid, run->key_column, run->range, &used);
	ListCell   *lc;

	foreach(lc, run->seqs)
		ConfineSequence(lfirst_oid(lc), run->relid, run->key_type, run->key_column,
						run->range, has_used, used);
}

/*
 * Confine every sequence feeding a registered table's key column to range.
 * The caller is connected to SPI.
 */
void
SyncConfineTableSequences(Oid relid, const char *key_column,
						  const SyncRange *range)
{
	AttrNumber	attnum = get_attnum(relid, key_column);
	Oid			key_type = get_atttype(relid, attnum);
	ConfineRun	run;
	Oid			owner;
	ListCell   *lc;

	/* only a table has keys to confine (not a view planted in sync_table) */
	if (get_rel_relkind(relid) != RELKIND_RELATION &&
		get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("%s is not a table", SyncRelationName(relid)),
				 errdetail("Only tables take part in sync.")));

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

	run.relid = relid;
	run.key_column = key_column;
	run.key_type = key_type;
	run.range = range;
	run.seqs = KeySequences(relid, key_column, true);
	if (run.seqs == NIL)
		return;

	/*
	 * The sequences are the table owner's to change: whoever asks (a
	 * superuser running sync_init, the event trigger), the highest key is
	 * read and the sequences altered as that owner, as a security-restricted
	 * operation, so nothing of the owner's runs with more rights than the
	 * owner's.
	 */
	owner = SyncRelationOwner(relid);
	foreach(lc, run.seqs)
		if (SyncRelationOwner(lfirst_oid(lc)) != owner)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("sequence %s, which feeds the key of table %s, is owned by role %s, not by the table's owner %s",
							SyncRelationName(lfirst_oid(lc)), SyncRelationName(relid),
							GetUserNameFromId(SyncRelationOwner(lfirst_oid(lc)), false),
							GetUserNameFromId(owner, false)),
					 errhint("Make the table's owner own it: ALTER SEQUENCE %s OWNER TO %s.",
							 SyncRelationName(lfirst_oid(lc)),
							 quote_identifier(GetUserNameFromId(owner, false)))));
	confining = true;
	PG_TRY();
	{
		SyncRunAs(owner, ConfineBody, &run);
	}
	PG_FINALLY();
	{
		confining = false;
	}
	PG_END_TRY();
}

/*
 * sync_reconfine_keys(): event trigger after ALTER TABLE and ALTER
 * SEQUENCE.  The sequences of every registered table the command touched
 * (the table, or a sequence its key draws from) are confined again; a key
 * default sync cannot confine fails the command.
 */
Datum
sync_reconfine_keys(PG_FUNCTION_ARGS)
{
	SyncMachine local;
	int			n;
	int			i;
	Oid		   *relids;
	char	  **keys;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "sync_reconfine_keys: not called as an event trigger");
	/* every ALTER TABLE fires this: between library and SQL updates, pass */
	if (confining || !SyncVersionMatches())
		PG_RETURN_VOID();
	SyncEnter(fcinfo);
	SPI_connect();
	if (!SyncLocalMachine(&local))
	{
		SPI_finish();
		PG_RETURN_VOID();
	}
	n = SyncExecute(psprintf("SELECT t.tbl::pg_catalog.oid, t.key_column::text FROM %s t"
							 " WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger_ddl_commands() c"
							 "                WHERE c.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
							 "                  AND (c.objid = t.tbl::pg_catalog.oid"
							 "                       OR c.objid IN (SELECT s::pg_catalog.oid"
							 "                                        FROM %s(t.tbl, t.key_column) s)))"
							 " ORDER BY 1",
							 SyncObject("sync_table"), SyncObject("sync_key_sequences")),
					0, NULL, NULL, NULL);
	relids = palloc(sizeof(Oid) * (n + 1));
	keys = palloc(sizeof(char *) * (n + 1));
	for (i = 0; i < n; i++)
	{
		relids[i] = SyncGetOid(i, 1);
		keys[i] = SyncGetText(i, 2);
	}
	for (i = 0; i < n; i++)
		if (get_attnum(relids[i], keys[i]) != InvalidAttrNumber)
			SyncConfineTableSequences(relids[i], keys[i], &local.range);
	SPI_finish();
	PG_RETURN_VOID();
}
