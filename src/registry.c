/*-------------------------------------------------------------------------
 *
 * registry.c
 *		The machine registry (sync_machine) and this server's identity
 *		(sync_instance).
 *
 * Every machine owns one key range; ranges never overlap, so every key has
 * exactly one owner.  A machine registered without a range gets BETYdb's:
 * machine N owns [N * 10^9 + 1, (N + 1) * 10^9 - 1].
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "sync.h"

PG_FUNCTION_INFO_V1(sync_register_machine);
PG_FUNCTION_INFO_V1(sync_range);
PG_FUNCTION_INFO_V1(sync_init);

#define SYNC_RANGE_SIZE INT64CONST(1000000000)

/* highest machine id whose default range still fits in bigint */
#define SYNC_MAX_DEFAULT_ID (PG_INT64_MAX / SYNC_RANGE_SIZE - 1)

/*
 * Look up a machine's range; false if the machine is not registered.
 * The caller is connected to SPI.
 */
bool
SyncLookupRange(int64 machine_id, SyncRange *range)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(machine_id)};
	char	   *sql;

	sql = psprintf("SELECT sync_start, sync_end FROM %s WHERE id = $1",
				   SyncObject("sync_machine"));
	if (SyncExecute(sql, 1, argtypes, values, NULL) == 0)
		return false;
	SyncGetInt64(0, 1, &range->start);
	SyncGetInt64(0, 2, &range->end);
	return true;
}

/*
 * This server's machine id and range; false if sync_init() has not been
 * run yet.  The caller is connected to SPI.
 */
bool
SyncLocalMachine(int64 *machine_id, SyncRange *range)
{
	char	   *sql;

	sql = psprintf("SELECT m.id, m.sync_start, m.sync_end"
				   "  FROM %s i JOIN %s m ON m.id = i.machine_id",
				   SyncObject("sync_instance"), SyncObject("sync_machine"));
	if (SyncExecute(sql, 0, NULL, NULL, NULL) == 0)
		return false;
	SyncGetInt64(0, 1, machine_id);
	if (range)
	{
		SyncGetInt64(0, 2, &range->start);
		SyncGetInt64(0, 3, &range->end);
	}
	return true;
}

/*
 * Report a machine id that is not registered.
 */
static void
ReportUnknownMachine(int64 machine_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("machine " INT64_FORMAT " is not registered", machine_id),
			 errhint("Register it with sync_register_machine(), or list the registered machines in sync_machine.")));
}

/*
 * Check a sync_url: empty means none; otherwise it must be an http, https
 * or file URL, the only schemes a subscriber will fetch from, and must not
 * carry credentials (the registry travels inside every dump).  Error
 * messages never repeat the URL, which might hold a password.
 */
static char *
CheckSyncUrl(char *url)
{
	const char *rest;
	size_t		authority;

	if (url == NULL || url[0] == '\0')
		return NULL;
	if (pg_strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else if (pg_strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (pg_strncasecmp(url, "file://", 7) == 0)
		rest = url + 7;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid sync_url"),
				 errdetail("A sync_url must start with http://, https:// or file://."),
				 errhint("Give the URL under which the machine's dump directory is served.")));
	authority = strcspn(rest, "/?#");
	if (memchr(rest, '@', authority) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sync_url must not contain credentials"),
				 errdetail("The registry, sync_url included, is published in every dump."),
				 errhint("Give the URL without user name and password; credentials for fetching from a machine are kept apart from the registry.")));
	return url;
}

/*
 * Warn about rows of registered tables whose keys lie outside this
 * machine's range: they count as copies of other machines' rows, and a pull
 * from their owner replaces or deletes them.  Rows created here before the
 * identity was set (keys 1, 2, ... fall in machine 0's range) are the usual
 * case worth knowing about.
 */
static void
WarnForeignRows(int64 machine_id, const SyncRange *range)
{
	Oid		   *relids;
	char	  **keys;
	int			ntables = SyncRegisteredTables(AccessShareLock, &relids, &keys);
	int			i;

	for (i = 0; i < ntables; i++)
	{
		SyncRange	everything = {PG_INT64_MIN, PG_INT64_MAX};
		int64		n = SyncCountKeys(relids[i], keys[i], &everything, range);

		if (n > 0)
			ereport(WARNING,
					(errmsg_plural("table %s has " INT64_FORMAT " row outside the range of machine " INT64_FORMAT,
								   "table %s has " INT64_FORMAT " rows outside the range of machine " INT64_FORMAT,
								   (unsigned long) n,
								   SyncRelationName(relids[i]), n, machine_id),
					 errdetail("Rows with keys outside [" INT64_FORMAT ", " INT64_FORMAT "] are copies of other machines' rows: a pull from their owner replaces or deletes them.",
							   range->start, range->end),
					 errhint("If these rows were created on this server, give them keys in this machine's range before pulling.")));
	}
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
	int64		id;
	char	   *hostname = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *url = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *contact = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	bool		has_range = !PG_ARGISNULL(4) && !PG_ARGISNULL(5);
	SyncRange	range = {0, 0};
	SyncRange	old_range;
	bool		exists;
	int64		local_id;
	SyncRange	local_range;
	bool		has_local;
	Oid			argtypes[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[6];
	char		nulls[6] = "      ";
	char	   *sql;
	Datum		result;

	SyncEnter(fcinfo);

	id = SyncMachineIdArg(fcinfo, 0);
	if (id < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid machine id " INT64_FORMAT, id),
				 errdetail("Machine ids are integers from 0 up.")));
	if (PG_ARGISNULL(4) != PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sync_start and sync_end must be given together"),
				 errhint("Give both ends of the range, or neither for the default range of the machine.")));
	if (hostname != NULL && hostname[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("hostname must not be empty")));
	url = CheckSyncUrl(url);
	if (has_range)
	{
		range.start = PG_GETARG_INT64(4);
		range.end = PG_GETARG_INT64(5);
		if (range.start > range.end)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid range [" INT64_FORMAT ", " INT64_FORMAT "] for machine " INT64_FORMAT,
							range.start, range.end, id),
					 errdetail("The start of a range must not be greater than its end.")));
	}

	values[0] = Int64GetDatum(id);
	SPI_connect();

	/* one registration at a time, so that the overlap check holds */
	SyncExecute(psprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE",
						 SyncObject("sync_machine")), 0, NULL, NULL, NULL);

	sql = psprintf("SELECT hostname, sync_url, sync_contact, sync_start, sync_end"
				   "  FROM %s WHERE id = $1", SyncObject("sync_machine"));
	exists = SyncExecute(sql, 1, argtypes, values, NULL) > 0;
	if (exists)
	{
		SyncGetInt64(0, 4, &old_range.start);
		SyncGetInt64(0, 5, &old_range.end);
	}
	if (!exists)
	{
		if (hostname == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("hostname of new machine " INT64_FORMAT " must not be null", id)));
		if (!has_range)
		{
			if (id > SYNC_MAX_DEFAULT_ID)
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("default range of machine " INT64_FORMAT " does not fit in bigint", id),
						 errdetail("Machine N owns [N * 10^9 + 1, (N + 1) * 10^9 - 1] by default, which is only defined up to machine " INT64_FORMAT ".",
								   (int64) SYNC_MAX_DEFAULT_ID),
						 errhint("Give sync_start and sync_end explicitly.")));
			range.start = id * SYNC_RANGE_SIZE + 1;
			range.end = (id + 1) * SYNC_RANGE_SIZE - 1;
		}
	}
	else
	{
		/* NULL keeps the current value, an empty string clears it */
		if (!has_range)
			range = old_range;
		if (hostname == NULL)
			hostname = SyncGetText(0, 1);
		if (PG_ARGISNULL(2))
			url = SyncGetText(0, 2);
		if (PG_ARGISNULL(3))
			contact = SyncGetText(0, 3);
	}
	if (contact != NULL && contact[0] == '\0')
		contact = NULL;

	/* the range must not collide with another machine's */
	{
		Oid			types[3] = {INT8OID, INT8OID, INT8OID};
		Datum		vals[3] = {Int64GetDatum(id), Int64GetDatum(range.start),
		Int64GetDatum(range.end)};

		sql = psprintf("SELECT id, hostname, sync_start, sync_end FROM %s"
					   " WHERE id <> $1 AND sync_start <= $3 AND sync_end >= $2"
					   " ORDER BY sync_start LIMIT 1",
					   SyncObject("sync_machine"));
		if (SyncExecute(sql, 3, types, vals, NULL) > 0)
		{
			int64		other;
			SyncRange	other_range;

			SyncGetInt64(0, 1, &other);
			SyncGetInt64(0, 3, &other_range.start);
			SyncGetInt64(0, 4, &other_range.end);
			ereport(ERROR,
					(errcode(ERRCODE_EXCLUSION_VIOLATION),
					 errmsg("range [" INT64_FORMAT ", " INT64_FORMAT "] of machine " INT64_FORMAT " overlaps the range of machine " INT64_FORMAT " (%s)",
							range.start, range.end, id, other, SyncGetText(0, 2)),
					 errdetail("Machine " INT64_FORMAT " owns [" INT64_FORMAT ", " INT64_FORMAT "].",
							   other, other_range.start, other_range.end),
					 errhint("Choose a range that does not overlap the range of any registered machine.")));
		}
	}

	/* the hostname must not belong to another machine */
	if (hostname != NULL)
	{
		Oid			types[2] = {INT8OID, TEXTOID};
		Datum		vals[2] = {Int64GetDatum(id), CStringGetTextDatum(hostname)};
		int64		other;

		sql = psprintf("SELECT id FROM %s WHERE id <> $1 AND hostname = $2",
					   SyncObject("sync_machine"));
		if (SyncExecute(sql, 2, types, vals, NULL) > 0 &&
			SyncGetInt64(0, 1, &other))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("hostname \"%s\" is already registered as machine " INT64_FORMAT,
							hostname, other),
					 errhint("Hostnames identify machines and must be unique.")));
	}

	/*
	 * Changing the local machine's range: the local rows must stay inside
	 * it, and the sequences follow it.
	 */
	has_local = SyncLocalMachine(&local_id, &local_range);
	if (has_local && local_id == id &&
		(range.start != local_range.start || range.end != local_range.end))
		SyncCheckNoRowsLeft(id, &local_range, &range, id);

	values[0] = Int64GetDatum(id);
	values[1] = CStringGetTextDatum(hostname);
	values[2] = url ? CStringGetTextDatum(url) : (Datum) 0;
	nulls[2] = url ? ' ' : 'n';
	values[3] = contact ? CStringGetTextDatum(contact) : (Datum) 0;
	nulls[3] = contact ? ' ' : 'n';
	values[4] = Int64GetDatum(range.start);
	values[5] = Int64GetDatum(range.end);

	/* updated_at moves only when something changed */
	sql = psprintf("INSERT INTO %s AS m (id, hostname, sync_url, sync_contact, sync_start, sync_end)"
				   " VALUES ($1, $2, $3, $4, $5, $6)"
				   " ON CONFLICT (id) DO UPDATE SET"
				   "   hostname = EXCLUDED.hostname, sync_url = EXCLUDED.sync_url,"
				   "   sync_contact = EXCLUDED.sync_contact,"
				   "   sync_start = EXCLUDED.sync_start, sync_end = EXCLUDED.sync_end,"
				   "   updated_at = CASE"
				   "     WHEN (m.hostname, m.sync_url, m.sync_contact, m.sync_start, m.sync_end)"
				   "       IS DISTINCT FROM (EXCLUDED.hostname, EXCLUDED.sync_url,"
				   "         EXCLUDED.sync_contact, EXCLUDED.sync_start, EXCLUDED.sync_end)"
				   "     THEN now() ELSE m.updated_at END"
				   " RETURNING *",
				   SyncObject("sync_machine"));
	SyncExecute(sql, 6, argtypes, values, nulls);
	result = SyncReturnRow(0);

	if (has_local && local_id == id &&
		(range.start != local_range.start || range.end != local_range.end))
		SyncConfineAllSequences(&range);

	SPI_finish();
	PG_RETURN_DATUM(result);
}

/*
 * sync_range(machine_id) returns (sync_start, sync_end)
 */
Datum
sync_range(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	SyncRange	range;
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	SyncEnter(fcinfo);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	if (!SyncLookupRange(id, &range))
		ReportUnknownMachine(id);
	SPI_finish();

	values[0] = Int64GetDatum(range.start);
	values[1] = Int64GetDatum(range.end);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}

/*
 * sync_init(machine_id) returns sync_instance
 *
 * Make this server the given registered machine, and confine the sequences
 * of all registered tables to its range.  Changing to another machine is
 * refused while rows remain in the old machine's range: they would be
 * orphaned, owned by a machine this server no longer is.
 */
Datum
sync_init(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	int64		old_id;
	SyncRange	range;
	SyncRange	old_range;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	char	   *sql;
	Datum		result;

	SyncEnter(fcinfo);
	SPI_connect();

	SyncExecute(psprintf("LOCK TABLE %s IN EXCLUSIVE MODE",
						 SyncObject("sync_instance")), 0, NULL, NULL, NULL);

	if (!SyncLookupRange(id, &range))
		ReportUnknownMachine(id);

	if (SyncLocalMachine(&old_id, &old_range) && old_id != id)
		SyncCheckNoRowsLeft(old_id, &old_range, NULL, id);

	sql = psprintf("INSERT INTO %s AS i (machine_id) VALUES ($1)"
				   " ON CONFLICT (singleton) DO UPDATE SET"
				   "   machine_id = $1,"
				   "   initialized_at = CASE WHEN i.machine_id = $1"
				   "     THEN i.initialized_at ELSE now() END"
				   " RETURNING *",
				   SyncObject("sync_instance"));
	SyncExecute(sql, 1, argtypes, values, NULL);
	result = SyncReturnRow(0);

	SyncConfineAllSequences(&range);
	WarnForeignRows(id, &range);

	SPI_finish();
	PG_RETURN_DATUM(result);
}
