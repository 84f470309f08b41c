/*-------------------------------------------------------------------------
 *
 * helpers.c
 *		The ground floor of the sync extension: naming its objects, running
 *		SQL through SPI, pinning settings, running as another role or in a
 *		subtransaction, starting background workers.  Nothing here uses any
 *		other file of the extension.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "helpers.h"

/* The extension's schema (and its quoted name), set by SyncEnter. */
static Oid	sync_schema_oid = InvalidOid;
static const char *sync_schema = NULL;

/*
 * The version of the extension's SQL objects installed in this database
 * (pg_extension.extversion), or NULL if it is not installed.
 */
static char *
InstalledVersion(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("sync"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * Refuse to run against SQL objects of another version than this library's
 * (after the library was updated, before ALTER EXTENSION ... UPDATE): the
 * functions' arguments and the tables' columns would not be what the code
 * expects.
 */
void
SyncCheckVersion(void)
{
	char	   *installed = InstalledVersion();

	if (installed != NULL && strcmp(installed, SYNC_EXTENSION_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension sync is at version %s in this database, but its library is version %s",
						installed, SYNC_EXTENSION_VERSION),
				 errhint("Run ALTER EXTENSION sync UPDATE.")));
}

/*
 * Are the SQL objects of this library's version (or not installed yet)?
 * For what must not fail when they are not, such as an event trigger that
 * every ALTER TABLE fires.
 */
bool
SyncVersionMatches(void)
{
	char	   *installed = InstalledVersion();

	return installed == NULL || strcmp(installed, SYNC_EXTENSION_VERSION) == 0;
}

/*
 * Start of every SQL-callable function: check that the SQL objects are of
 * this library's version, and remember the schema the extension was
 * created in (the schema of the function being called), so that the SQL
 * we build always names our own objects, whatever search_path says.
 */
void
SyncEnter(FunctionCallInfo fcinfo)
{
	SyncCheckVersion();
	SyncUseSchema(get_func_namespace(fcinfo->flinfo->fn_oid));
}

/*
 * Make nsp the schema whose objects our SQL names: SyncEnter's work, for a
 * background worker that entered through no function of the extension.
 */
void
SyncUseSchema(Oid nsp)
{
	const char *quoted = quote_identifier(get_namespace_name(nsp));

	/*
	 * Kept in TopMemoryContext: a nested call (from a trigger, say) must not
	 * leave the outer call with a pointer into memory freed meanwhile.  Only
	 * a renamed schema makes a new copy; the old one is left in place for
	 * any caller still holding it.
	 */
	if (sync_schema == NULL || nsp != sync_schema_oid ||
		strcmp(sync_schema, quoted) != 0)
		sync_schema = MemoryContextStrdup(TopMemoryContext, quoted);
	sync_schema_oid = nsp;
}

/*
 * The extension's schema, as set by SyncEnter.
 */
Oid
SyncSchemaOid(void)
{
	Assert(OidIsValid(sync_schema_oid));
	return sync_schema_oid;
}

/*
 * Owner of a relation.
 */
Oid
SyncRelationOwner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Schema-qualified, quoted name of one of the extension's own objects.
 */
char *
SyncObject(const char *name)
{
	Assert(sync_schema != NULL);
	return psprintf("%s.%s", sync_schema, quote_identifier(name));
}

/*
 * Schema-qualified, quoted name of a relation, for building SQL.
 */
char *
SyncRelationName(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	char	   *nspname;

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	nspname = get_namespace_name(get_rel_namespace(relid));
	return quote_qualified_identifier(nspname, relname);
}

/*
 * Run one SQL statement with parameters through SPI (the caller has
 * connected).  Any failure is an ERROR; returns the number of rows
 * processed, with the rows in SPI_tuptable.
 *
 * Never read-only: each statement sees what committed before it started
 * (in READ COMMITTED) and what earlier statements of this call did, so
 * checks made after taking a lock see the state the lock protects.
 */
int
SyncExecute(const char *sql, int nargs, Oid *argtypes, Datum *values,
			const char *nulls)
{
	int			rc;

	rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls,
							   false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s: %s",
			 SPI_result_code_string(rc), sql);
	return (int) SPI_processed;
}

/*
 * Like SyncExecute, but every query sees the given snapshot (plus the
 * effects of earlier statements of this command), not a new one: so a
 * series of statements works on one consistent view of the database.
 */
int
SyncExecuteSnapshot(const char *sql, int nargs, Oid *argtypes, Datum *values,
					const char *nulls, Snapshot snapshot)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);
	int			rc;

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s: %s",
			 SPI_result_code_string(SPI_result), sql);
	rc = SPI_execute_snapshot(plan, values, nulls, snapshot, InvalidSnapshot,
							  false, false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_snapshot failed: %s: %s",
			 SPI_result_code_string(rc), sql);
	SPI_freeplan(plan);
	return (int) SPI_processed;
}

/*
 * Fetch an int64 (bigint, integer or smallint) value from the last SPI
 * result; returns false for NULL.
 */
bool
SyncGetInt64(int row, int col, int64 *value)
{
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;
	Datum		d;

	d = SPI_getbinval(SPI_tuptable->vals[row], desc, col, &isnull);
	if (isnull)
		return false;
	switch (SPI_gettypeid(desc, col))
	{
		case INT8OID:
			*value = DatumGetInt64(d);
			break;
		case INT4OID:
			*value = DatumGetInt32(d);
			break;
		case INT2OID:
			*value = DatumGetInt16(d);
			break;
		default:
			elog(ERROR, "unexpected type %u in column %d",
				 SPI_gettypeid(desc, col), col);
	}
	return true;
}

/*
 * Fetch a value from the last SPI result as text (NULL for SQL NULL).
 */
char *
SyncGetText(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/*
 * Fetch a text[] value from the last SPI result as a list of C strings
 * (NIL for NULL); a NULL element would be an empty name, so arrays passed
 * here have none.
 */
List *
SyncGetTextList(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	List	   *result = NIL;
	int			n;
	int			i;

	if (isnull)
		return NIL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (i = 0; i < n; i++)
		result = lappend(result, nulls[i] ? pstrdup("") : TextDatumGetCString(elems[i]));
	return result;
}

/*
 * Fetch an oid (or regclass) value from the last SPI result; InvalidOid for
 * NULL.
 */
Oid
SyncGetOid(int row, int col)
{
	bool		isnull;
	Datum		d;

	d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
					  &isnull);
	return isnull ? InvalidOid : DatumGetObjectId(d);
}

/*
 * Fetch a boolean value from the last SPI result; false for NULL.
 */
bool
SyncGetBool(int row, int col)
{
	bool		isnull;
	Datum		d;

	d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
					  &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * Set up a C function returning SETOF regclass (or oid) to return its
 * values in a tuplestore (rsinfo->setResult, rsinfo->setDesc), whether it
 * is called in FROM or in a select list.
 */
void
SyncSetOfOids(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext oldcxt;
	TupleDesc	desc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	desc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(desc, (AttrNumber) 1, "oid", REGCLASSOID, -1, 0);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setDesc = desc;
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * The current user must own the table (as ALTER TABLE requires).
 */
void
SyncCheckTableOwner(Oid relid)
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
 * Copy a row of the last SPI result out of SPI's memory, as the composite
 * result of the calling function.  Call before SPI_finish().
 */
Datum
SyncReturnRow(int row)
{
	return PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[row],
										   SPI_tuptable->tupdesc));
}

/*
 * The settings that COPY text depends on, as pg_dump sets them; "input"
 * marks those that also change how values are read back.  The same rows
 * then give the same bytes, and are read as they were written, whatever
 * the session, role or database settings are.
 */
static const struct
{
	const char *name;
	const char *value;
	bool		input;
}			copy_formats[] =
{
	{"DateStyle", "ISO, YMD", true},
	{"IntervalStyle", "postgres", true},
	{"lc_monetary", "C", true},
	{"extra_float_digits", "3", false},
	{"bytea_output", "hex", false},
	{"TimeZone", "UTC", false},
};

/* Set one setting until the current GUC nest level is popped. */
static void
PinSetting(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * The composite result of the calling function, made of values and nulls
 * in the order of its result type's columns.
 */
Datum
SyncResultRow(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	desc;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
}

/*
 * Set, until AtEOXact_GUC(true, <returned level>), the settings under which
 * sync reads and writes data: a search_path no user object can stand in,
 * and (with data_formats) every format COPY text output depends on.  On
 * error the (sub)transaction's abort restores them.
 */
int
SyncPinSettings(bool data_formats)
{
	int			nestlevel = NewGUCNestLevel();
	int			i;

	PinSetting("search_path", "pg_catalog, pg_temp");
	if (data_formats)
		for (i = 0; i < (int) lengthof(copy_formats); i++)
			PinSetting(copy_formats[i].name, copy_formats[i].value);
	return nestlevel;
}

/*
 * The settings under which a pull applies rows, until AtEOXact_GUC(true,
 * <returned level>): the input formats COPY text was written in, and the
 * caller's own search_path behind pg_catalog (so that local triggers and
 * defaults see what they expect, while built-ins stay what our SQL means).
 * The time zone stays the caller's, for the triggers' sake.
 */
int
SyncPinInputSettings(const char *session_path)
{
	int			nestlevel = NewGUCNestLevel();
	int			i;

	PinSetting("search_path", (session_path && session_path[0]) ?
			   psprintf("pg_catalog, %s, pg_temp", session_path) :
			   "pg_catalog, pg_temp");
	for (i = 0; i < (int) lengthof(copy_formats); i++)
		if (copy_formats[i].input)
			PinSetting(copy_formats[i].name, copy_formats[i].value);
	return nestlevel;
}

/*
 * Run body(arg) as role, under a pinned search_path and as a
 * security-restricted operation: so a role may use the extension's own
 * tables through its functions without any privilege on them, and nothing
 * of the caller's (an operator in its search_path, say) can take part.
 * The caller's identity is back when this returns, or throws.
 */
void
SyncRunAs(Oid role, SyncBody body, void *arg)
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel = SyncPinSettings(false);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(role, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		body(arg);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	AtEOXact_GUC(true, save_nestlevel);
}

/*
 * Run a SyncStatement (a SyncBody, for SyncRunAs and
 * SyncRunInSubtransaction).
 */
void
SyncExecuteStatement(void *statement)
{
	SyncStatement *st = (SyncStatement *) statement;

	if (st->snapshot)
		st->rows = SyncExecuteSnapshot(st->sql, st->nargs, st->argtypes, st->values,
									   st->nulls, st->snapshot);
	else
		st->rows = SyncExecute(st->sql, st->nargs, st->argtypes, st->values, st->nulls);
}

/*
 * Run one statement as role (see SyncRunAs); returns the rows processed,
 * with the rows in SPI_tuptable.  The caller is connected to SPI.
 */
int
SyncExecuteAs(Oid role, const char *sql, int nargs, Oid *argtypes,
			  Datum *values, const char *nulls)
{
	SyncStatement st = {sql, nargs, argtypes, values, nulls, 0, NULL};

	SyncRunAs(role, SyncExecuteStatement, &st);
	return st.rows;
}

/*
 * In a background worker, start a transaction for running SQL through SPI,
 * with a snapshot and, with pin, under SyncPinSettings (undone when the
 * transaction ends).  SyncWorkerCommit ends it.
 */
void
SyncWorkerBegin(bool pin)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (pin)
		(void) SyncPinSettings(false);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/* Commit what SyncWorkerBegin started. */
void
SyncWorkerCommit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

static ErrorData *RunSubtransaction(SyncBody body, SyncBody cleanup, void *arg, bool undo);

/*
 * Run body(arg) in a subtransaction.  On success it is committed into the
 * caller's transaction and NULL is returned.  On error, cleanup(arg) runs
 * first (while what body allocated still exists: files to remove, handles
 * to close), the subtransaction is rolled back, and the error is returned,
 * not raised: the caller records it, then raises it again.  So a failure
 * leaves the caller's transaction exactly as it was, and usable.
 */
ErrorData *
SyncRunInSubtransaction(SyncBody body, SyncBody cleanup, void *arg)
{
	return RunSubtransaction(body, cleanup, arg, false);
}

/*
 * As SyncRunInSubtransaction, but the subtransaction is rolled back on
 * success too: what body did is undone, what it computed (in memory the
 * caller's context holds) stays.  For a dry run.
 */
ErrorData *
SyncRunAndUndo(SyncBody body, SyncBody cleanup, void *arg)
{
	return RunSubtransaction(body, cleanup, arg, true);
}

/* The work of SyncRunInSubtransaction and SyncRunAndUndo. */
static ErrorData *
RunSubtransaction(SyncBody body, SyncBody cleanup, void *arg, bool undo)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		body(arg);
		if (undo)
			RollbackAndReleaseCurrentSubTransaction();
		else
			ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		if (cleanup)
			cleanup(arg);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return edata;
}

/*
 * A machine id argument, which must not be NULL.
 */
int64
SyncMachineIdArg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("machine id must not be null")));
	return PG_GETARG_INT64(argno);
}

/*
 * Describe a background worker of this library that connects to a
 * database: function is its entry point, type its name in
 * pg_stat_activity (and its process name, unless the caller sets one).
 */
void
SyncWorkerInit(BackgroundWorker *worker, const char *function,
			   const char *type, int restart_time)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = restart_time;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "sync");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", type);
}
