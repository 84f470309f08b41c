/*-------------------------------------------------------------------------
 *
 * identity.c
 *		Setting up a machine: registering machines (sync_register_machine)
 *		and saying which one this server is (sync_init).
 *
 * Both may move the local range: sync_init by making this server another
 * machine, sync_register_machine by changing the local machine's range.
 * Either is refused while local rows would be left outside the range (they
 * would belong to a machine this server is not), and afterwards every
 * sequence feeding a registered key is confined to the new range.  The
 * registry's own rules are registry.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "guard.h"
#include "registry.h"
#include "sequences.h"
#include "tables.h"

PG_FUNCTION_INFO_V1(sync_register_machine);
PG_FUNCTION_INFO_V1(sync_init);

/*
 * Refuse to give up machine_id's range (old_range) while a registered table
 * still has rows in it that new_range does not cover (new_range NULL: none
 * of it is kept).  Those rows would belong to a machine this server no
 * longer is, and nobody could publish, change or delete them.
 */
static void
CheckNoRowsLeft(int64 machine_id, const SyncRange *old_range,
				const SyncRange *new_range, int64 new_machine_id)
{
	int			ntables;
	int			i;
	Oid		   *relids;
	char	  **keys;

	/* no rows may arrive in the range while we look */
	ntables = SyncRegisteredTables(ShareLock, &relids, &keys);
	for (i = 0; i < ntables; i++)
	{
		int64		n = SyncCountKeys(relids[i], keys[i], old_range, new_range);

		if (n == 0)
			continue;
		if (new_machine_id != machine_id)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot change this server from machine " INT64_FORMAT " to machine " INT64_FORMAT,
							machine_id, new_machine_id),
					 errdetail_plural("Table %s has " INT64_FORMAT " row with a key in the range [" INT64_FORMAT ", " INT64_FORMAT "] of machine " INT64_FORMAT ", which would then belong to a machine this server is not.",
									  "Table %s has " INT64_FORMAT " rows with keys in the range [" INT64_FORMAT ", " INT64_FORMAT "] of machine " INT64_FORMAT ", which would then belong to a machine this server is not.",
									  (unsigned long) n,
									  SyncRelationName(relids[i]), n,
									  old_range->start, old_range->end, machine_id),
					 errhint("Keep this server as machine " INT64_FORMAT ", or delete or move those rows first.",
							 machine_id)));
		else
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot change the range of machine " INT64_FORMAT " to [" INT64_FORMAT ", " INT64_FORMAT "]",
							machine_id, new_range->start, new_range->end),
					 errdetail_plural("Table %s has " INT64_FORMAT " row of this server with a key outside the new range.",
									  "Table %s has " INT64_FORMAT " rows of this server with keys outside the new range.",
									  (unsigned long) n,
									  SyncRelationName(relids[i]), n),
					 errhint("Choose a range that still holds every key in use, or delete or move those rows first.")));
	}
}

/*
 * Confine the key sequences of all registered tables to range; returns the
 * number of tables.
 */
static int
ConfineAllSequences(const SyncRange *range)
{
	Oid		   *relids;
	char	  **keys;
	int			ntables = SyncRegisteredTables(ShareLock, &relids, &keys);
	int			i;

	for (i = 0; i < ntables; i++)
		SyncConfineTableSequences(relids[i], keys[i], range);
	return ntables;
}

/*
 * Warn about rows of registered tables whose keys lie in no registered
 * machine's range: nobody publishes them and no pull changes them.  (Rows
 * of other machines' ranges are copies, as they should be on a subscriber.)
 * Rows created here before the identity was set, with keys outside every
 * range, are the usual case worth knowing about.
 */
static void
WarnUnownedRows(const SyncRange *range)
{
	Oid		   *relids;
	char	  **keys;
	int			ntables = SyncRegisteredTables(AccessShareLock, &relids, &keys);
	int			i;

	for (i = 0; i < ntables; i++)
	{
		int64		n = SyncCountUnowned(relids[i], keys[i]);

		if (n > 0)
			SyncWarnUnowned(relids[i], n, range);
	}
}

/* A text argument, or NULL. */
static const char *
TextArg(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * sync_register_machine(id, hostname, sync_url, sync_contact, sync_start,
 *						 sync_end) returns sync_machine
 *
 * Insert or update a registry entry.  NULL arguments keep an existing
 * machine's values; a new machine without a range gets the default one.
 */
Datum
sync_register_machine(PG_FUNCTION_ARGS)
{
	SyncRegistration reg;
	SyncMachine machine;
	SyncMachine local;
	bool		moves_local;
	int			save_nestlevel;
	Datum		result;

	SyncEnter(fcinfo);
	memset(&reg, 0, sizeof(reg));
	reg.id = SyncMachineIdArg(fcinfo, 0);
	reg.hostname = TextArg(fcinfo, 1);
	reg.url = TextArg(fcinfo, 2);
	reg.contact = TextArg(fcinfo, 3);
	if (PG_ARGISNULL(4) != PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sync_start and sync_end must be given together"),
				 errhint("Give both ends of the range, or neither for the default range of the machine.")));
	reg.has_range = !PG_ARGISNULL(4);
	if (reg.has_range)
	{
		reg.range.start = PG_GETARG_INT64(4);
		reg.range.end = PG_GETARG_INT64(5);
	}

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	SyncPrepareRegistration(&reg, &machine);

	/* the local rows must stay inside the local range; sequences follow it */
	moves_local = SyncLocalMachine(&local) && local.id == machine.id &&
		(machine.range.start != local.range.start ||
		 machine.range.end != local.range.end);
	if (moves_local)
		CheckNoRowsLeft(machine.id, &local.range, &machine.range, machine.id);

	SyncStoreMachine(&machine);
	result = SyncReturnRow(0);
	if (moves_local)
		ConfineAllSequences(&machine.range);

	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_DATUM(result);
}

/*
 * sync_init(machine_id) returns (machine_id, hostname, sync_url, sync_start,
 * sync_end, tables, initialized_at)
 *
 * Make this server the given registered machine, and confine the sequences
 * of all registered tables to its range; say what it now is, and how many
 * tables' sequences were confined.  Changing to another machine is
 * refused while rows remain in the old machine's range: they would be
 * orphaned, owned by a machine this server no longer is.
 */
Datum
sync_init(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	SyncMachine machine;
	SyncMachine old;
	int			save_nestlevel;
	int			tables;
	Datum		result;
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext oldcxt;

	SyncEnter(fcinfo);
	save_nestlevel = SyncPinSettings(false);
	SPI_connect();

	SyncLockIdentity();
	if (!SyncLookupMachine(id, &machine))
		SyncReportUnknownMachine(id);
	if (SyncLocalMachine(&old) && old.id != id)
		CheckNoRowsLeft(old.id, &old.range, NULL, id);

	SyncStoreIdentity(id);
	tables = ConfineAllSequences(&machine.range);
	WarnUnownedRows(&machine.range);

	{
		Oid			argtypes[1] = {INT4OID};
		Datum		args[1] = {Int32GetDatum(tables)};
		Datum		values[7];
		bool		nulls[7];
		TupleDesc	desc;
		int			i;

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "sync_init must return a row");
		SyncExecute(psprintf("SELECT m.id, m.hostname, m.sync_url, m.sync_start, m.sync_end, $1, i.initialized_at"
							 "  FROM %s i JOIN %s m ON m.id = i.machine_id",
							 SyncObject("sync_instance"), SyncObject("sync_machine")),
					1, argtypes, args, NULL);
		for (i = 0; i < 7; i++)
		{
			values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &nulls[i]);
			/* out of SPI's memory, which SPI_finish frees */
			if (!nulls[i])
				values[i] = SPI_datumTransfer(values[i], TupleDescAttr(desc, i)->attbyval,
											  TupleDescAttr(desc, i)->attlen);
		}
		oldcxt = MemoryContextSwitchTo(outer);
		result = HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
		MemoryContextSwitchTo(oldcxt);
	}

	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	PG_RETURN_DATUM(result);
}
