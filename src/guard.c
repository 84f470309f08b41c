/*-------------------------------------------------------------------------
 *
 * guard.c
 *		Ownership on this server: only machine N creates, changes or deletes
 *		N's rows, here too.
 *
 * sync_add_table puts the guard on a registered table (sync_remove_table
 * takes it away): a CHECK constraint on the key, which every new row and
 * every new row version passes (after the table's BEFORE triggers, so it
 * sees the key they leave), a BEFORE UPDATE OR DELETE row trigger for the
 * rows written over or deleted, and a BEFORE TRUNCATE trigger.  A bulk
 * INSERT or COPY thus costs one function call per row, not a trigger.  For
 * every role, a write to a row whose key lies in another registered
 * machine's range is refused — an INSERT with such a key, an UPDATE or
 * DELETE of such a row, an UPDATE that moves a key into such a range, and
 * so also a local DELETE whose ON DELETE CASCADE or SET NULL reaches such
 * rows — and so is a TRUNCATE of a table that holds such rows.  In
 * session_replication_role = replica (a superuser's), where PostgreSQL
 * fires no ordinary trigger, the CHECK lets everything through too.
 *
 * A table registered with foreign_rows 'writable' lets these writes
 * through, and records which machines' rows were written (sync_written):
 * the next pull of such a machine merges the table again, and the owner's
 * version wins.  Keys in no machine's range, and every key before this
 * server knows which machine it is, are let through.
 *
 * Only a pull lifts the guard, for the machine it applies, and only from
 * C: nothing a user can set turns it off.  While a pull of machine N runs,
 * a write to a third machine's row (by a trigger or a cascade here) fails
 * the pull, and writes to this server's own rows are counted.
 *
 * The registry and the identity have a guard of their own here,
 * sync_guard_identity: they change only through sync's functions
 * (registry.c), or by a superuser, and every change makes the row guard
 * read them again.
 *
 * The guard must be cheap: the ranges, the identity and the registrations
 * are read once per transaction (and again after sync or DDL changes them)
 * into backend memory, straight from the tables (so no role needs a
 * privilege on them); a row of this server costs a comparison, another
 * row a binary search.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "guard.h"
#include "registry.h"

PG_FUNCTION_INFO_V1(sync_guard_rows);
PG_FUNCTION_INFO_V1(sync_guard_key);
PG_FUNCTION_INFO_V1(sync_guard_truncate);
PG_FUNCTION_INFO_V1(sync_keep_guards);
PG_FUNCTION_INFO_V1(sync_guard_identity);
PG_FUNCTION_INFO_V1(sync_guard_registration);

/* pg_trigger.tgtype of the guard's triggers */
#define GUARD_ROWS_TYPE \
	(TRIGGER_TYPE_ROW | TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_DELETE | TRIGGER_TYPE_UPDATE)
#define GUARD_TRUNCATE_TYPE (TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_TRUNCATE)

/* A machine's range. */
typedef struct GuardRange
{
	int64		start;
	int64		end;
	int64		id;
} GuardRange;

/* What the guard knows of a table (or partition) it fires on. */
typedef struct GuardTable
{
	Oid			relid;			/* hash key */
	Oid			registered;		/* the registered table, or InvalidOid */
	AttrNumber	key;			/* in relid's own columns */
	bool		writable;		/* foreign_rows = 'writable' */
	int64	   *recorded;		/* machines recorded in sync_written */
	int			nrecorded;
} GuardTable;

/* the cache, valid until the transaction ends or sync changes what it holds */
static MemoryContext guard_cxt = NULL;
static bool guard_valid = false;
static Oid	guard_nsp;			/* the extension's schema */
static bool has_local;
static int64 local_id;
static SyncRange local_range;
static GuardRange *ranges;
static int	nranges;
static HTAB *tables;
static GuardTable *last_table;	/* the entry found last */

/* the pull under way (-1: none), and this server's rows it changed */
static int64 pulling = -1;
static int64 local_changes = 0;

static bool callback_registered = false;

/* set while SyncGuardInstall creates a table's triggers one by one */
static bool installing = false;

/* At the end of a transaction, whatever it did: forget all of it. */
static void
GuardXactCallback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		guard_valid = false;
		pulling = -1;
		local_changes = 0;
	}
}

/*
 * When a subtransaction rolls back, what it recorded in sync_written goes
 * with it: forget what the cache says was recorded.
 */
static void
GuardSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		guard_valid = false;
}

/*
 * Another session committed DDL, or a change of the registry, the identity
 * or the registrations (which send a relation cache invalidation, see
 * Broadcast): read them again at the next row.
 */
static void
GuardRelcacheCallback(Datum arg, Oid relid)
{
	guard_valid = false;
}

/*
 * Have the cache forgotten at the end of every (sub)transaction, and
 * whenever another session changed what it holds.
 */
static void
RegisterCallbacks(void)
{
	if (callback_registered)
		return;
	RegisterXactCallback(GuardXactCallback, NULL);
	RegisterSubXactCallback(GuardSubXactCallback, NULL);
	CacheRegisterRelcacheCallback(GuardRelcacheCallback, (Datum) 0);
	callback_registered = true;
}

/*
 * rel (sync_machine, sync_instance or sync_table) changed: this session's
 * guard reads it again, and so do other sessions' once this commits.
 */
static void
Broadcast(Relation rel)
{
	guard_valid = false;
	CacheInvalidateRelcache(rel);
}

/* sync changed the registry, the identity or the registrations. */
void
SyncGuardInvalidate(void)
{
	guard_valid = false;
}

/* qsort comparator: ranges by start */
static int
CompareRanges(const void *a, const void *b)
{
	int64		x = ((const GuardRange *) a)->start;
	int64		y = ((const GuardRange *) b)->start;

	return (x > y) - (x < y);
}

/* The extension's table name in schema nsp, opened for reading. */
static Relation
OpenOwnTable(Oid nsp, const char *name)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "sync: table %s is missing", name);
	return table_open(relid, AccessShareLock);
}

/* An int8 column of a tuple of rel (0 for NULL). */
static int64
Int8Column(Relation rel, HeapTuple tuple, const char *column)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, get_attnum(RelationGetRelid(rel), column),
								 RelationGetDescr(rel), &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* Read the ranges of every machine, and which one this server is. */
static void
ReadRegistry(Oid nsp)
{
	Relation	rel = OpenOwnTable(nsp, "sync_machine");
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	HeapTuple	tuple;
	int			cap = 16;
	int			i;

	ranges = palloc(sizeof(GuardRange) * cap);
	nranges = 0;
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		if (nranges == cap)
			ranges = repalloc(ranges, sizeof(GuardRange) * (cap *= 2));
		ranges[nranges].id = Int8Column(rel, tuple, "id");
		ranges[nranges].start = Int8Column(rel, tuple, "sync_start");
		ranges[nranges].end = Int8Column(rel, tuple, "sync_end");
		nranges++;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	qsort(ranges, nranges, sizeof(GuardRange), CompareRanges);

	rel = OpenOwnTable(nsp, "sync_instance");
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	has_local = false;
	if ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		local_id = Int8Column(rel, tuple, "machine_id");
		for (i = 0; i < nranges; i++)
			if (ranges[i].id == local_id)
			{
				local_range.start = ranges[i].start;
				local_range.end = ranges[i].end;
				has_local = true;
			}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* Read the registrations: key column and foreign_rows of every table. */
static void
ReadRegistrations(Oid nsp)
{
	Relation	rel = OpenOwnTable(nsp, "sync_table");
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	AttrNumber	tbl_att = get_attnum(RelationGetRelid(rel), "tbl");
	AttrNumber	key_att = get_attnum(RelationGetRelid(rel), "key_column");
	AttrNumber	rows_att = get_attnum(RelationGetRelid(rel), "foreign_rows");
	HeapTuple	tuple;

	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(heap_getattr(tuple, tbl_att, RelationGetDescr(rel), &isnull));
		Datum		key = heap_getattr(tuple, key_att, RelationGetDescr(rel), &isnull);
		GuardTable *t;
		bool		found;

		if (isnull)
			continue;
		t = hash_search(tables, &relid, HASH_ENTER, &found);
		t->registered = relid;
		t->key = get_attnum(relid, NameStr(*DatumGetName(key)));
		t->writable = false;
		t->recorded = NULL;
		t->nrecorded = 0;
		if (rows_att != InvalidAttrNumber)
		{
			Datum		rows = heap_getattr(tuple, rows_att, RelationGetDescr(rel), &isnull);

			t->writable = !isnull && strcmp(TextDatumGetCString(rows), "writable") == 0;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* Read the cache afresh from the tables of the extension's schema nsp. */
static void
Load(Oid nsp)
{
	HASHCTL		ctl;
	MemoryContext oldcxt;

	RegisterCallbacks();
	if (guard_cxt == NULL)
		guard_cxt = AllocSetContextCreate(TopMemoryContext, "sync guard",
										  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(guard_cxt);
	oldcxt = MemoryContextSwitchTo(guard_cxt);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(GuardTable);
	ctl.hcxt = guard_cxt;
	tables = hash_create("sync guard tables", 32, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	last_table = NULL;
	ReadRegistry(nsp);
	ReadRegistrations(nsp);
	MemoryContextSwitchTo(oldcxt);
	guard_nsp = nsp;
	guard_valid = true;
}

/*
 * Make the cache valid; fn_oid is the guard's function, whose schema is
 * the extension's.  Returns that schema.
 */
static Oid
Refresh(Oid fn_oid)
{
	if (!guard_valid)
		Load(get_func_namespace(fn_oid));
	return guard_nsp;
}

/*
 * What the guard knows of relid: a registered table, or a partition of
 * one (whose key is found by name in its own columns).
 */
static GuardTable *
TableFor(Oid relid)
{
	GuardTable *t;
	bool		found;
	ListCell   *lc;

	/* a bulk write asks for one table, row after row */
	if (last_table != NULL && last_table->relid == relid)
		return last_table;
	t = hash_search(tables, &relid, HASH_FIND, &found);
	if (found)
		return (last_table = t);
	t = hash_search(tables, &relid, HASH_ENTER, &found);
	t->registered = InvalidOid;
	t->recorded = NULL;
	t->nrecorded = 0;
	if (get_rel_relispartition(relid))
	{
		List	   *ancestors = get_partition_ancestors(relid);

		foreach(lc, ancestors)
		{
			Oid			ancestor = lfirst_oid(lc);
			GuardTable *a = hash_search(tables, &ancestor, HASH_FIND, &found);

			if (found && OidIsValid(a->registered))
			{
				t->registered = a->registered;
				t->writable = a->writable;
				t->key = get_attnum(relid, get_attname(ancestor, a->key, false));
				break;
			}
		}
	}
	return (last_table = t);
}

/* The machine whose range holds key, or -1. */
static int64
Owner(int64 key)
{
	int			lo = 0;
	int			hi = nranges - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;

		if (key < ranges[mid].start)
			hi = mid - 1;
		else if (key > ranges[mid].end)
			lo = mid + 1;
		else
			return ranges[mid].id;
	}
	return -1;
}

/* The key of a tuple as int64; false for NULL. */
static bool
TupleKey(Relation rel, HeapTuple tuple, AttrNumber key, int64 *value)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, key, RelationGetDescr(rel), &isnull);

	if (isnull)
		return false;
	switch (TupleDescAttr(RelationGetDescr(rel), key - 1)->atttypid)
	{
		case INT2OID:
			*value = DatumGetInt16(d);
			break;
		case INT4OID:
			*value = DatumGetInt32(d);
			break;
		default:
			*value = DatumGetInt64(d);
			break;
	}
	return true;
}

/*
 * Run one statement on sync_written (in the extension's schema nsp) as its
 * owner: sql names the table with %s.  Returns the rows processed, with the
 * rows in SPI_tuptable.  The caller is connected to SPI.
 */
static int
WrittenExecute(Oid nsp, const char *sql, int nargs, Oid *argtypes, Datum *values)
{
	return SyncExecuteAs(SyncRelationOwner(get_relname_relid("sync_written", nsp)),
						 psprintf(sql, psprintf("%s.sync_written",
												quote_identifier(get_namespace_name(nsp)))),
						 nargs, argtypes, values, NULL);
}

/*
 * Record that rows of machine owner in writable table t were written here:
 * the next pull of owner merges the table again.  Once per transaction.
 */
static void
Record(Oid nsp, GuardTable *t, int64 owner)
{
	Oid			argtypes[2] = {REGCLASSOID, INT8OID};
	Datum		values[2] = {ObjectIdGetDatum(t->registered), Int64GetDatum(owner)};
	int			i;

	for (i = 0; i < t->nrecorded; i++)
		if (t->recorded[i] == owner)
			return;
	SPI_connect();
	(void) WrittenExecute(nsp, "INSERT INTO %s (tbl, machine_id) VALUES ($1, $2)"
						  " ON CONFLICT DO NOTHING", 2, argtypes, values);
	SPI_finish();
	t->recorded = t->recorded ?
		repalloc(t->recorded, sizeof(int64) * (t->nrecorded + 1)) :
		MemoryContextAlloc(guard_cxt, sizeof(int64));
	t->recorded[t->nrecorded++] = owner;
}

/*
 * May this session write (operation) the row of t with key?  Raises the
 * error if not.  During a pull, a row of this server's counts as changed
 * (with count: each change is counted once, by the CHECK for new rows and
 * row versions, by the trigger for deletions).
 */
static void
CheckKey(Oid nsp, GuardTable *t, int64 key, const char *operation, bool count)
{
	int64		owner;

	if (key >= local_range.start && key <= local_range.end)
	{
		if (pulling >= 0 && count)
			local_changes++;
		return;
	}
	owner = Owner(key);
	if (owner < 0 || owner == pulling)
		return;
	if (pulling >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("pull of machine " INT64_FORMAT " cannot %s row " INT64_FORMAT " of table %s, which belongs to machine " INT64_FORMAT,
						pulling, operation, key, SyncRelationName(t->registered), owner),
				 errdetail("A trigger or a cascade here reached a row of a third machine while rows of machine " INT64_FORMAT " arrived; nothing was applied.",
						   pulling),
				 errhint("Let triggers and cascades leave other machines' rows alone; only machine " INT64_FORMAT " changes its rows.",
						 owner)));
	if (t->writable)
	{
		Record(nsp, t, owner);
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot %s row " INT64_FORMAT " of table %s, which belongs to machine " INT64_FORMAT,
					operation, key, SyncRelationName(t->registered), owner),
			 errdetail("Only machine " INT64_FORMAT " creates, changes or deletes its rows; this server holds a read-only copy of them.",
					   owner),
			 errhint("Only machine " INT64_FORMAT " changes its rows; they arrive with sync_pull(" INT64_FORMAT ").",
					 owner, owner)));
}

/*
 * sync_guard_rows(): BEFORE UPDATE OR DELETE row trigger of a registered
 * table: the row written over or deleted must be one this session may
 * write.  (New rows and row versions are the CHECK's: sync_guard_key.)
 */
Datum
sync_guard_rows(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	Oid			nsp;
	GuardTable *t;
	int64		old_key;
	bool		deleting;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "sync_guard_rows: not called as a BEFORE ROW trigger");
	rel = td->tg_relation;
	deleting = TRIGGER_FIRED_BY_DELETE(td->tg_event);
	nsp = Refresh(fcinfo->flinfo->fn_oid);
	t = TableFor(RelationGetRelid(rel));

	/* registered, with an identity: the old row's owner decides */
	if (OidIsValid(t->registered) && has_local && t->key != InvalidAttrNumber &&
		(deleting || TRIGGER_FIRED_BY_UPDATE(td->tg_event)) &&
		TupleKey(rel, td->tg_trigtuple, t->key, &old_key))
		CheckKey(nsp, t, old_key, deleting ? "delete" : "update", deleting);
	return PointerGetDatum(deleting ? td->tg_trigtuple : td->tg_newtuple);
}

/*
 * sync_guard_key(tbl regclass, key bigint) returns boolean: the CHECK
 * constraint of a registered table, on every new row and row version.
 * True, or an error naming the row's owner.
 */
Datum
sync_guard_key(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	int64		key = PG_GETARG_INT64(1);
	Oid			nsp;
	GuardTable *t;

	nsp = Refresh(fcinfo->flinfo->fn_oid);

	/*
	 * Replica mode: as for every ordinary trigger, nothing is refused; but
	 * another machine's row written here leaves its copy different from
	 * what it published, so its next pull merges the table whole.
	 */
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
	{
		if (has_local && pulling < 0 &&
			(key < local_range.start || key > local_range.end))
		{
			int64		owner = Owner(key);

			t = TableFor(relid);
			if (owner >= 0 && OidIsValid(t->registered))
				Record(nsp, t, owner);
		}
		PG_RETURN_BOOL(true);
	}
	if (!has_local || (key >= local_range.start && key <= local_range.end && pulling < 0))
		PG_RETURN_BOOL(true);
	t = TableFor(relid);
	if (OidIsValid(t->registered))
		CheckKey(nsp, t, key, "write", true);
	PG_RETURN_BOOL(true);
}

/*
 * sync_guard_truncate(): BEFORE TRUNCATE trigger of a registered table.  A
 * table holding other machines' rows is not truncated (a writable one is,
 * and its machines merge it again at their next pull).
 */
Datum
sync_guard_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Oid			relid;
	Oid			nsp;
	GuardTable *t;
	char	   *key;
	bool		writable;
	GuardRange *others;
	int			n;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		elog(ERROR, "sync_guard_truncate: not called as a TRUNCATE trigger");
	relid = RelationGetRelid(td->tg_relation);
	nsp = Refresh(fcinfo->flinfo->fn_oid);
	t = TableFor(relid);
	if (!OidIsValid(t->registered) || !has_local || t->key == InvalidAttrNumber)
		return PointerGetDatum(NULL);
	key = get_attname(relid, t->key, false);
	writable = t->writable;
	n = nranges;
	others = palloc(sizeof(GuardRange) * (n + 1));
	memcpy(others, ranges, sizeof(GuardRange) * n);

	for (i = 0; i < n; i++)
	{
		Oid			argtypes[2] = {INT8OID, INT8OID};
		Datum		values[2] = {Int64GetDatum(others[i].start), Int64GetDatum(others[i].end)};
		int64		rows = 0;
		int			save_nestlevel;

		if (others[i].id == local_id)
			continue;
		/* every row counts: a policy hiding some fails the TRUNCATE */
		save_nestlevel = NewGUCNestLevel();
		(void) set_config_option("row_security", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		SPI_connect();
		SyncExecuteAs(SyncRelationOwner(relid),
					  psprintf("SELECT pg_catalog.count(*) FROM (SELECT 1 FROM %s"
							   " WHERE %s BETWEEN $1 AND $2 LIMIT 1) r",
							   SyncRelationName(relid), quote_identifier(key)),
					  2, argtypes, values, NULL);
		SyncGetInt64(0, 1, &rows);
		SPI_finish();
		AtEOXact_GUC(true, save_nestlevel);
		if (rows == 0)
			continue;
		if (writable)
		{
			nsp = Refresh(fcinfo->flinfo->fn_oid);
			Record(nsp, TableFor(relid), others[i].id);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("cannot truncate table %s, which holds rows of machine " INT64_FORMAT,
							SyncRelationName(relid), others[i].id),
					 errdetail("Only machine " INT64_FORMAT " deletes its rows; this server holds a read-only copy of them.",
							   others[i].id),
					 errhint("Delete this server's own rows instead, or unregister the table with sync_remove_table() first.")));
	}
	return PointerGetDatum(NULL);
}

/*
 * sync_guard_identity(): trigger of sync_machine and sync_instance.  Rows
 * are inserted and changed only by sync's own functions, or by a superuser
 * (restoring a dump, say); a machine that is not this server may be
 * deleted by whoever may delete rows.
 */
Datum
sync_guard_identity(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "sync_guard_identity: not called as a trigger");
	rel = trigdata->tg_relation;
	if (!SyncRegistryWriting() && !superuser() &&
		!(TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) &&
		  strcmp(RelationGetRelationName(rel), "sync_machine") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("table %s changes only through sync's functions",
						RelationGetRelationName(rel)),
				 errdetail("Ranges and this server's identity decide which keys its sequences hand out; sync keeps the two together."),
				 errhint("Use sync_register_machine() or sync_init().")));
	/* the ranges or the identity change: the row guard reads them again */
	Broadcast(rel);
	if (TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}

/*
 * sync_guard_registration(): trigger of sync_table.  A registration (and
 * so what the guard lets through: foreign_rows 'writable', or no guard at
 * all) changes only by the table's owner, as sync_add_table and
 * sync_remove_table require, or a superuser; a table dropped meanwhile
 * may be forgotten by anyone.  Every change makes the guard read the
 * registrations again, in every session.
 */
Datum
sync_guard_registration(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	HeapTuple	rows[2];
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "sync_guard_registration: not called as a trigger");
	rel = td->tg_relation;
	rows[0] = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? NULL : td->tg_trigtuple;
	rows[1] = TRIGGER_FIRED_BY_INSERT(td->tg_event) ? td->tg_trigtuple :
		TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : NULL;
	for (i = 0; i < 2 && !superuser(); i++)
	{
		bool		isnull;
		Oid			relid;

		if (rows[i] == NULL)
			continue;
		relid = DatumGetObjectId(heap_getattr(rows[i], 1, RelationGetDescr(rel), &isnull));
		if (!isnull && get_rel_name(relid) != NULL)
			SyncCheckTableOwner(relid);
	}
	Broadcast(rel);
	return PointerGetDatum(TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple);
}

/*
 * While a pull of machine_id applies its rows: its rows may be written, a
 * third machine's may not, and this server's own are counted.  Only the
 * pull calls this; the transaction's end undoes it in any case.
 */
void
SyncGuardBeginPull(int64 machine_id)
{
	RegisterCallbacks();
	pulling = machine_id;
	local_changes = 0;
}

/* End what SyncGuardBeginPull began; returns this server's rows changed. */
int64
SyncGuardEndPull(void)
{
	int64		changed = local_changes;

	pulling = -1;
	local_changes = 0;
	return changed;
}

/* Drop the guard's constraint from a table, if it has it. */
static void
DropConstraint(Oid relid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};

	if (SyncExecute("SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = $1 AND conname = '"
					SYNC_GUARD_CONSTRAINT "' AND conislocal", 1, argtypes, values, NULL) > 0)
		SyncExecute(psprintf("ALTER TABLE %s DROP CONSTRAINT %s", SyncRelationName(relid),
							 SYNC_GUARD_CONSTRAINT),
					0, NULL, NULL, NULL);
}

/*
 * Put the guard on a registered table whose key is key_column: the
 * triggers unless they are there, and the CHECK constraint (again, for the
 * key may have changed).  NOT VALID: the rows already there are not
 * checked, and pg_dump restores the constraint after the rows.  The caller
 * owns the table and is connected to SPI.
 */
void
SyncGuardInstall(Oid relid, const char *key_column)
{
	static const struct
	{
		const char *name;
		const char *definition;
		const char *function;
	}			triggers[] =
	{
		{SYNC_GUARD_TRIGGER, "BEFORE UPDATE OR DELETE ON %s FOR EACH ROW", "sync_guard_rows"},
		{SYNC_GUARD_TRUNCATE_TRIGGER, "BEFORE TRUNCATE ON %s FOR EACH STATEMENT", "sync_guard_truncate"},
	};
	const char *table = SyncRelationName(relid);
	int			i;

	/* sync_keep_guards would refuse a table with half its guard */
	installing = true;
	PG_TRY();
	{
		for (i = 0; i < (int) lengthof(triggers); i++)
		{
			Oid			argtypes[2] = {OIDOID, TEXTOID};
			Datum		values[2] = {ObjectIdGetDatum(relid), CStringGetTextDatum(triggers[i].name)};

			if (SyncExecute("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND tgname = $2",
							2, argtypes, values, NULL) > 0)
				continue;
			SyncExecute(psprintf("CREATE TRIGGER %s %s EXECUTE FUNCTION %s()",
								 triggers[i].name, psprintf(triggers[i].definition, table),
								 SyncObject(triggers[i].function)),
						0, NULL, NULL, NULL);
		}
		DropConstraint(relid);
		/* partitions take it (they must); tables inheriting do not */
		SyncExecute(psprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s(%s::pg_catalog.regclass, %s))%s NOT VALID",
							 table, SYNC_GUARD_CONSTRAINT, SyncObject("sync_guard_key"),
							 quote_literal_cstr(table), quote_identifier(key_column),
							 get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE ? "" : " NO INHERIT"),
					0, NULL, NULL, NULL);
	}
	PG_FINALLY();
	{
		installing = false;
	}
	PG_END_TRY();
	SyncGuardInvalidate();
}

/*
 * Take the guard off a table that is no longer registered, and forget its
 * local writes.  The caller owns the table and is connected to SPI.
 */
void
SyncGuardRemove(Oid relid)
{
	if (get_rel_name(relid) != NULL)
	{
		const char *table = SyncRelationName(relid);

		SyncExecute(psprintf("DROP TRIGGER IF EXISTS %s ON %s", SYNC_GUARD_TRIGGER, table),
					0, NULL, NULL, NULL);
		SyncExecute(psprintf("DROP TRIGGER IF EXISTS %s ON %s", SYNC_GUARD_TRUNCATE_TRIGGER, table),
					0, NULL, NULL, NULL);
		DropConstraint(relid);
	}
	SyncForgetWritten(-1, relid);
	SyncGuardInvalidate();
}

/*
 * The writable tables in which rows of machine_id were written here since
 * its last pull, as an OID list.  The caller is connected to SPI.
 */
List *
SyncWrittenTables(int64 machine_id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(machine_id)};
	List	   *relids = NIL;
	int			n;
	int			i;

	n = WrittenExecute(SyncSchemaOid(), "SELECT tbl FROM %s WHERE machine_id = $1",
					   1, argtypes, values);
	for (i = 0; i < n; i++)
		relids = lappend_oid(relids, SyncGetOid(i, 1));
	return relids;
}

/*
 * Forget the local writes of machine_id's rows (-1: of every machine) in
 * table relid (InvalidOid: in every table).  The caller is connected to
 * SPI.
 */
void
SyncForgetWritten(int64 machine_id, Oid relid)
{
	Oid			argtypes[2] = {INT8OID, OIDOID};
	Datum		values[2] = {Int64GetDatum(machine_id), ObjectIdGetDatum(relid)};

	(void) WrittenExecute(SyncSchemaOid(), "DELETE FROM %s WHERE ($1 < 0 OR machine_id = $1)"
						  "   AND ($2 = 0 OR tbl::pg_catalog.oid = $2)",
						  2, argtypes, values);
	/* what the cache says was recorded is gone */
	SyncGuardInvalidate();
}

/* pg_trigger conditions: g is exactly the guard's row or TRUNCATE trigger */
#define EXACT_ROWS_GUARD \
	"(g.tgname = '" SYNC_GUARD_TRIGGER "' AND g.tgfoid = $1::pg_catalog.regprocedure" \
	" AND g.tgtype = " CppAsString2(GUARD_ROWS_TYPE) " AND g.tgenabled IN ('O', 'A')" \
	" AND g.tgqual IS NULL AND pg_catalog.cardinality(g.tgattr::pg_catalog.int2[]) = 0)"
#define EXACT_TRUNCATE_GUARD \
	"(g.tgname = '" SYNC_GUARD_TRUNCATE_TRIGGER "' AND g.tgfoid = $2::pg_catalog.regprocedure" \
	" AND g.tgtype = " CppAsString2(GUARD_TRUNCATE_TYPE) " AND g.tgenabled IN ('O', 'A'))"

/*
 * The first registered table (or partition of one) whose guard (triggers
 * or constraint) the DDL just run dropped, disabled, replaced, renamed,
 * moved off the registered key, or tied to another extension, as the table and the
 * registered table it belongs to; false if there is none.  A table with
 * no guard trigger at all is passed over here: pg_restore creates tables
 * (and alters them) before their triggers.  The caller is connected to
 * SPI.
 */
static bool
GuardTampered(bool dropped, char **table, char **registered)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	const char *sql;

	values[0] = CStringGetTextDatum(psprintf("%s()", SyncObject("sync_guard_rows")));
	values[1] = CStringGetTextDatum(psprintf("%s()", SyncObject("sync_guard_truncate")));
	if (dropped)
		/* a guard trigger dropped from a table still registered */
		sql = psprintf("SELECT r::pg_catalog.text, t.tbl::pg_catalog.text"
					   "  FROM pg_catalog.pg_event_trigger_dropped_objects() d"
					   " CROSS JOIN LATERAL pg_catalog.to_regclass(pg_catalog.quote_ident(d.address_names[1])"
					   "                    || '.' || pg_catalog.quote_ident(d.address_names[2])) r"
					   "  JOIN %s t ON t.tbl = r OR t.tbl IN (SELECT pg_catalog.pg_partition_ancestors(r))"
					   " WHERE (d.object_type = 'trigger'"
					   "        AND d.address_names[3] IN ('" SYNC_GUARD_TRIGGER "', '" SYNC_GUARD_TRUNCATE_TRIGGER "'))"
					   "    OR (d.object_type = 'table constraint' AND d.address_names[3] = '" SYNC_GUARD_CONSTRAINT "')"
					   " ORDER BY 2, 1 LIMIT 1",
					   SyncObject("sync_table"));
	else
		/*
		 * a trigger named as the guard, or running it, that is not the
		 * guard; the guard's constraint under another name
		 */
		sql = psprintf("SELECT p.relid::pg_catalog.regclass::pg_catalog.text, t.tbl::pg_catalog.text"
					   "  FROM %s t"
					   " CROSS JOIN LATERAL (SELECT t.tbl::pg_catalog.oid AS relid, 0 AS level"
					   "                      UNION ALL"
					   "                     SELECT r.relid, r.level FROM pg_catalog.pg_partition_tree(t.tbl) r"
					   "                      WHERE r.level > 0) p"
					   " WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g"
					   "                WHERE g.tgrelid = p.relid"
					   "                  AND (g.tgname IN ('" SYNC_GUARD_TRIGGER "', '" SYNC_GUARD_TRUNCATE_TRIGGER "')"
					   "                       OR g.tgfoid IN ($1::pg_catalog.regprocedure, $2::pg_catalog.regprocedure))"
					   "                  AND NOT " EXACT_ROWS_GUARD
					   "                  AND NOT (p.level = 0 AND " EXACT_TRUNCATE_GUARD "))"
					   "    OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c"
					   "                WHERE c.conrelid = p.relid AND c.conname <> '" SYNC_GUARD_CONSTRAINT "'"
					   "                  AND pg_catalog.pg_get_expr(c.conbin, c.conrelid) LIKE '%%sync_guard_key(%%')"
					   /* the constraint on another column than the registered key */
					   "    OR (p.level = 0 AND EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c"
					   "                WHERE c.conrelid = p.relid AND c.conname = '" SYNC_GUARD_CONSTRAINT "'"
					   "                  AND c.conkey IS DISTINCT FROM ARRAY[(SELECT a.attnum FROM pg_catalog.pg_attribute a"
					   "                       WHERE a.attrelid = p.relid AND a.attname = t.key_column"
					   "                         AND NOT a.attisdropped)]::pg_catalog.int2[]))"
					   /* a trigger that would go with another extension */
					   "    OR EXISTS (SELECT 1 FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_depend d"
					   "                 ON d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass"
					   "                AND d.objid = g.oid AND d.deptype = 'x'"
					   "                WHERE g.tgrelid = p.relid"
					   "                  AND g.tgname IN ('" SYNC_GUARD_TRIGGER "', '" SYNC_GUARD_TRUNCATE_TRIGGER "'))"
					   " ORDER BY 2, 1 LIMIT 1",
					   SyncObject("sync_table"));
	if (SyncExecute(sql, 2, argtypes, values, NULL) == 0)
		return false;
	*table = SyncGetText(0, 1);
	*registered = SyncGetText(0, 2);
	return true;
}

/*
 * sync_keep_guards(): event trigger at the end of DDL that can touch
 * triggers, and when triggers are dropped.  A registered table (or a
 * partition of one) whose guard was dropped, disabled, replaced or renamed
 * is refused: the guard goes only with the registration
 * (sync_remove_table).  Whatever the DDL, the guard reads the
 * registrations again.
 */
Datum
sync_keep_guards(PG_FUNCTION_ARGS)
{
	char	   *table;
	char	   *registered;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "sync_keep_guards: not called as an event trigger");
	SyncGuardInvalidate();
	if (installing || !SyncVersionMatches())
		PG_RETURN_VOID();
	SyncEnter(fcinfo);

	SPI_connect();
	if (GuardTampered(strcmp(((EventTriggerData *) fcinfo->context)->event, "sql_drop") == 0,
					  &table, &registered))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot drop, disable or change the guard of table %s", table),
				 errdetail("The constraint %s and the triggers %s and %s keep other machines' rows read-only while table %s is registered for sync.",
						   SYNC_GUARD_CONSTRAINT, SYNC_GUARD_TRIGGER, SYNC_GUARD_TRUNCATE_TRIGGER, registered),
				 errhint("Unregister the table with sync_remove_table('%s') first.  To edit other machines' rows here, register it with foreign_rows => 'writable' instead.",
						 registered)));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * The registry's ranges in order of their starts, as the guard's cache
 * holds them (read afresh, seeing this transaction's own changes, if they
 * changed).  Valid until the next statement.
 */
static int
SortedRanges(GuardRange **out)
{
	if (!guard_valid)
	{
		PushCopiedSnapshot(GetActiveSnapshot());
		UpdateActiveSnapshotCommandId();
		Load(SyncSchemaOid());
		PopActiveSnapshot();
	}
	*out = ranges;
	return nranges;
}

/*
 * SQL condition: key (a quoted column) lies in no registered machine's
 * range.  Written as the gaps between the ranges, so that an index on the
 * key finds such rows without reading the others.
 */
static char *
UnownedSql(const char *key)
{
	GuardRange *r;
	int			n = SortedRanges(&r);
	StringInfoData sql;
	int64		from = PG_INT64_MIN;	/* the next key not yet covered */
	bool		open = true;		/* keys from 'from' on are uncovered */
	int			i;

	initStringInfo(&sql);
	appendStringInfoChar(&sql, '(');
	for (i = 0; i < n && open; i++)
	{
		if (r[i].start > from)
			appendStringInfo(&sql, "%s%s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT,
							 sql.len > 1 ? " OR " : "", key, from, r[i].start - 1);
		if (r[i].end == PG_INT64_MAX)
			open = false;
		else
			from = r[i].end + 1;
	}
	if (open)
		appendStringInfo(&sql, "%s%s >= " INT64_FORMAT, sql.len > 1 ? " OR " : "", key, from);
	if (sql.len == 1)
		appendStringInfoString(&sql, "false");
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/*
 * Rows of a registered table whose key lies in no registered machine's
 * range: nobody publishes them, and no pull changes them.  The caller is
 * connected to SPI.
 */
int64
SyncCountUnowned(Oid relid, const char *key)
{
	int64		n = 0;

	SyncExecute(psprintf("SELECT pg_catalog.count(*) FROM %s WHERE %s",
						 SyncRelationName(relid),
						 UnownedSql(quote_identifier(key))),
				0, NULL, NULL, NULL);
	SyncGetInt64(0, 1, &n);
	return n;
}

/*
 * Say what a table being registered already holds beyond this server's own
 * rows: a NOTICE per machine whose rows it holds (copies, from now on
 * read-only or writable as foreign_rows says), and a WARNING for rows in no
 * machine's range.  The caller is connected to SPI.
 */
void
SyncReportForeignRows(Oid relid, const char *key, const SyncRange *local,
					  bool writable)
{
	GuardRange *r;
	int			n = SortedRanges(&r);
	const char *k = quote_identifier(key);
	StringInfoData owner;
	int			rows;
	int			i;

	initStringInfo(&owner);
	appendStringInfoString(&owner, "CASE");
	for (i = 0; i < n; i++)
		appendStringInfo(&owner, " WHEN %s BETWEEN " INT64_FORMAT " AND " INT64_FORMAT " THEN " INT64_FORMAT,
						 k, r[i].start, r[i].end, r[i].id);
	appendStringInfoString(&owner, " END");
	rows = SyncExecute(psprintf("SELECT %s AS owner, pg_catalog.count(*) FROM %s"
								" WHERE %s NOT BETWEEN " INT64_FORMAT " AND " INT64_FORMAT
								" GROUP BY 1 ORDER BY 1 NULLS LAST",
								n > 0 ? owner.data : "NULL::pg_catalog.int8",
								SyncRelationName(relid), k,
								local->start, local->end),
					   0, NULL, NULL, NULL);
	for (i = 0; i < rows; i++)
	{
		int64		machine_id = -1;
		int64		count = 0;
		bool		owned = SyncGetInt64(i, 1, &machine_id);

		SyncGetInt64(i, 2, &count);
		if (owned)
			ereport(NOTICE,
					(errmsg_plural("table %s holds " INT64_FORMAT " row of machine " INT64_FORMAT,
								   "table %s holds " INT64_FORMAT " rows of machine " INT64_FORMAT,
								   (unsigned long) count,
								   SyncRelationName(relid), count, machine_id),
					 errdetail(writable ?
							   "They are copies of machine " INT64_FORMAT "'s rows: they may be changed here, and the next pull of machine " INT64_FORMAT " puts back its version." :
							   "They are copies of machine " INT64_FORMAT "'s rows: only a pull of machine " INT64_FORMAT " changes them now.",
							   machine_id, machine_id)));
		else
			SyncWarnUnowned(relid, count, local);
	}
}

/*
 * Warn that count rows of a registered table lie in no machine's range;
 * local is this server's range.
 */
void
SyncWarnUnowned(Oid relid, int64 count, const SyncRange *local)
{
	ereport(WARNING,
			(errmsg_plural("table %s has " INT64_FORMAT " row in no machine's range",
						   "table %s has " INT64_FORMAT " rows in no machine's range",
						   (unsigned long) count,
						   SyncRelationName(relid), count),
			 errdetail("Rows whose keys no registered machine owns are neither published nor changed by any pull."),
			 errhint("Give them keys in this machine's range [" INT64_FORMAT ", " INT64_FORMAT "], or register the machine that owns them.",
					 local->start, local->end)));
}
