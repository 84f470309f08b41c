/*-------------------------------------------------------------------------
 *
 * registry.c
 *		The machine registry (sync_machine) and this server's identity
 *		(sync_instance): every read and write of them, and the rules an
 *		entry keeps however it arrives.
 *
 * Every machine owns one key range; ranges never overlap, so every key has
 * exactly one owner.  A machine registered without a range gets BETYdb's:
 * machine N owns [N * 10^9 + 1, (N + 1) * 10^9 - 1].  Hostnames are unique.
 * A sync_url is an http, https or file URL without credentials (the
 * registry travels inside every dump).
 *
 * Entries arrive two ways: sync_register_machine (identity.c, which also
 * looks after the local range) and the registry inside a pulled archive
 * (SyncMergeRegistry).  Both go through the same checks here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "registry.h"

PG_FUNCTION_INFO_V1(sync_range);

#define SYNC_RANGE_SIZE INT64CONST(1000000000)

/* highest machine id whose default range still fits in bigint */
#define SYNC_MAX_DEFAULT_ID (PG_INT64_MAX / SYNC_RANGE_SIZE - 1)

/* the columns every query of an entry reads, in SyncMachine order */
#define MACHINE_COLUMNS "id, hostname, sync_url, sync_contact, sync_start, sync_end"

/* What is wrong with an entry, if anything. */
typedef enum MachineProblem
{
	MACHINE_OK,
	MACHINE_BAD_ID,
	MACHINE_EMPTY_HOSTNAME,
	MACHINE_BAD_URL,
	MACHINE_URL_CREDENTIALS,
	MACHINE_BAD_RANGE
} MachineProblem;

/* Read an entry from row of the last SPI result (MACHINE_COLUMNS). */
static void
MachineFromRow(int row, SyncMachine *m)
{
	SyncGetInt64(row, 1, &m->id);
	m->hostname = SyncGetText(row, 2);
	m->url = SyncGetText(row, 3);
	m->contact = SyncGetText(row, 4);
	SyncGetInt64(row, 5, &m->range.start);
	SyncGetInt64(row, 6, &m->range.end);
}

/*
 * Look up a machine; false if it is not registered.  The caller is
 * connected to SPI.
 */
bool
SyncLookupMachine(int64 id, SyncMachine *machine)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};

	if (SyncExecute(psprintf("SELECT " MACHINE_COLUMNS " FROM %s WHERE id = $1",
							 SyncObject("sync_machine")),
					1, argtypes, values, NULL) == 0)
		return false;
	MachineFromRow(0, machine);
	return true;
}

/*
 * Report a machine id that is not registered.
 */
void
SyncReportUnknownMachine(int64 id)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("machine " INT64_FORMAT " is not registered", id),
			 errhint("Register it with sync_register_machine(), or list the registered machines in sync_machine.")));
}

/*
 * Find a registered machine by id or (by_name) by hostname; an unknown
 * one is an ERROR.  The caller is connected to SPI.
 */
void
SyncFindMachine(bool by_name, int64 id, const char *hostname,
				SyncMachine *machine)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];

	if (!by_name)
	{
		if (!SyncLookupMachine(id, machine))
			SyncReportUnknownMachine(id);
		return;
	}
	values[0] = CStringGetTextDatum(hostname);
	if (SyncExecute(psprintf("SELECT " MACHINE_COLUMNS " FROM %s WHERE hostname = $1",
							 SyncObject("sync_machine")),
					1, argtypes, values, NULL) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no machine with hostname \"%s\" is registered", hostname),
				 errhint("Registered machines are listed in sync_machine.")));
	MachineFromRow(0, machine);
}

/*
 * The machine whose range holds key; false if none does.  The caller is
 * connected to SPI.
 */
bool
SyncMachineOwning(int64 key, SyncMachine *machine)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(key)};

	if (SyncExecute(psprintf("SELECT " MACHINE_COLUMNS " FROM %s"
							 " WHERE $1 BETWEEN sync_start AND sync_end",
							 SyncObject("sync_machine")),
					1, argtypes, values, NULL) == 0)
		return false;
	MachineFromRow(0, machine);
	return true;
}

/*
 * The machine this server is; false if sync_init() has not been run yet.
 * The caller is connected to SPI.
 */
bool
SyncLocalMachine(SyncMachine *machine)
{
	if (SyncExecute(psprintf("SELECT m.id, m.hostname, m.sync_url, m.sync_contact,"
							 "       m.sync_start, m.sync_end"
							 "  FROM %s i JOIN %s m ON m.id = i.machine_id",
							 SyncObject("sync_instance"), SyncObject("sync_machine")),
					0, NULL, NULL, NULL) == 0)
		return false;
	MachineFromRow(0, machine);
	return true;
}

/* The machine this server is, which a dump or a pull needs. */
void
SyncRequireLocalMachine(SyncMachine *machine)
{
	if (!SyncLocalMachine(machine))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this server has no sync identity"),
				 errhint("Say which registered machine this server is with sync_init().")));
}

/*
 * Check the fields of an entry that were given (NULL: not given).  An empty
 * URL is a problem here: sync_register_machine turns one into "none"
 * before asking.
 */
static MachineProblem
CheckFields(const int64 *id, const char *hostname, const char *url,
			const SyncRange *range)
{
	if (id && *id < 0)
		return MACHINE_BAD_ID;
	if (hostname && hostname[0] == '\0')
		return MACHINE_EMPTY_HOSTNAME;
	if (url)
	{
		const char *rest;

		if (pg_strncasecmp(url, "http://", 7) == 0)
			rest = url + 7;
		else if (pg_strncasecmp(url, "https://", 8) == 0)
			rest = url + 8;
		else if (pg_strncasecmp(url, "file://", 7) == 0)
			rest = url + 7;
		else
			return MACHINE_BAD_URL;
		if (memchr(rest, '@', strcspn(rest, "/?#")) != NULL)
			return MACHINE_URL_CREDENTIALS;
	}
	if (range && range->start > range->end)
		return MACHINE_BAD_RANGE;
	return MACHINE_OK;
}

/*
 * Report a problem CheckFields found in sync_register_machine's arguments.
 * Messages never repeat the URL, which might hold a password.
 */
static void
ReportProblem(MachineProblem problem, int64 id, const SyncRange *range)
{
	switch (problem)
	{
		case MACHINE_OK:
			return;
		case MACHINE_BAD_ID:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid machine id " INT64_FORMAT, id),
					 errdetail("Machine ids are integers from 0 up.")));
			break;
		case MACHINE_EMPTY_HOSTNAME:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("hostname must not be empty")));
			break;
		case MACHINE_BAD_URL:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid sync_url"),
					 errdetail("A sync_url must start with http://, https:// or file://."),
					 errhint("Give the URL under which the machine's dump directory is served.")));
			break;
		case MACHINE_URL_CREDENTIALS:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("sync_url must not contain credentials"),
					 errdetail("The registry, sync_url included, is published in every dump."),
					 errhint("Give the URL without user name and password; credentials for fetching from a machine are kept apart from the registry.")));
			break;
		case MACHINE_BAD_RANGE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid range [" INT64_FORMAT ", " INT64_FORMAT "] for machine " INT64_FORMAT,
							range->start, range->end, id),
					 errdetail("The start of a range must not be greater than its end.")));
			break;
	}
}

/*
 * Is range (of machine id) overlapping another registered machine's?  Sets
 * other to the first such machine.
 */
static bool
OverlappingMachine(int64 id, const SyncRange *range, SyncMachine *other)
{
	Oid			argtypes[3] = {INT8OID, INT8OID, INT8OID};
	Datum		values[3] = {Int64GetDatum(id), Int64GetDatum(range->start),
	Int64GetDatum(range->end)};

	if (SyncExecute(psprintf("SELECT " MACHINE_COLUMNS " FROM %s"
							 " WHERE id <> $1 AND sync_start <= $3 AND sync_end >= $2"
							 " ORDER BY sync_start LIMIT 1",
							 SyncObject("sync_machine")),
					3, argtypes, values, NULL) == 0)
		return false;
	MachineFromRow(0, other);
	return true;
}

/* Does another machine than id have hostname?  Sets other to its id. */
static bool
HostnameTaken(int64 id, const char *hostname, int64 *other)
{
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(id), CStringGetTextDatum(hostname)};

	return SyncExecute(psprintf("SELECT id FROM %s WHERE id <> $1 AND hostname = $2",
								SyncObject("sync_machine")),
					   2, argtypes, values, NULL) > 0 &&
		SyncGetInt64(0, 1, other);
}

/*
 * Work out the entry that sync_register_machine's arguments make, and check
 * it against every rule: its fields, a range of its own, a hostname of its
 * own.  Takes the lock that keeps registrations one at a time until the
 * transaction ends.  The caller is connected to SPI.
 */
void
SyncPrepareRegistration(const SyncRegistration *reg, SyncMachine *m)
{
	SyncMachine known;
	SyncMachine other;
	int64		other_id;

	ReportProblem(CheckFields(&reg->id, reg->hostname,
							  (reg->url && reg->url[0]) ? reg->url : NULL,
							  reg->has_range ? &reg->range : NULL),
				  reg->id, &reg->range);

	/* one registration at a time, so that the overlap check holds */
	SyncExecute(psprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE",
						 SyncObject("sync_machine")), 0, NULL, NULL, NULL);

	if (!SyncLookupMachine(reg->id, &known))
	{
		memset(&known, 0, sizeof(known));
		if (reg->hostname == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("hostname of new machine " INT64_FORMAT " must not be null", reg->id)));
		if (!reg->has_range && reg->id > SYNC_MAX_DEFAULT_ID)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("default range of machine " INT64_FORMAT " does not fit in bigint", reg->id),
					 errdetail("Machine N owns [N * 10^9 + 1, (N + 1) * 10^9 - 1] by default, which is only defined up to machine " INT64_FORMAT ".",
							   (int64) SYNC_MAX_DEFAULT_ID),
					 errhint("Give sync_start and sync_end explicitly.")));
		known.range.start = reg->id * SYNC_RANGE_SIZE + 1;
		known.range.end = (reg->id + 1) * SYNC_RANGE_SIZE - 1;
	}

	/* NULL keeps the current value, an empty string clears it */
	m->id = reg->id;
	m->hostname = reg->hostname ? pstrdup(reg->hostname) : known.hostname;
	m->url = reg->url ? (reg->url[0] ? pstrdup(reg->url) : NULL) : known.url;
	m->contact = reg->contact ? (reg->contact[0] ? pstrdup(reg->contact) : NULL) : known.contact;
	m->range = reg->has_range ? reg->range : known.range;

	if (OverlappingMachine(m->id, &m->range, &other))
		ereport(ERROR,
				(errcode(ERRCODE_EXCLUSION_VIOLATION),
				 errmsg("range [" INT64_FORMAT ", " INT64_FORMAT "] of machine " INT64_FORMAT " overlaps the range of machine " INT64_FORMAT " (%s)",
						m->range.start, m->range.end, m->id, other.id, other.hostname),
				 errdetail("Machine " INT64_FORMAT " owns [" INT64_FORMAT ", " INT64_FORMAT "].",
						   other.id, other.range.start, other.range.end),
				 errhint("Choose a range that does not overlap the range of any registered machine.")));
	if (HostnameTaken(m->id, m->hostname, &other_id))
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("hostname \"%s\" is already registered as machine " INT64_FORMAT,
						m->hostname, other_id),
				 errhint("Hostnames identify machines and must be unique.")));
}

/*
 * Fill the first four statement parameters with a machine's id, hostname,
 * URL and contact (NULL where it has none).
 */
static void
ContactParams(const SyncMachine *m, Datum *values, char *nulls)
{
	values[0] = Int64GetDatum(m->id);
	values[1] = CStringGetTextDatum(m->hostname);
	values[2] = m->url ? CStringGetTextDatum(m->url) : (Datum) 0;
	nulls[2] = m->url ? ' ' : 'n';
	values[3] = m->contact ? CStringGetTextDatum(m->contact) : (Datum) 0;
	nulls[3] = m->contact ? ' ' : 'n';
}

/*
 * Insert or update an entry that passed the checks; the new row is left in
 * SPI_tuptable.  updated_at moves only when something changed.  With
 * insert_only, an entry that exists meanwhile fails the statement.
 */
static void
StoreMachine(const SyncMachine *m, bool insert_only)
{
	Oid			argtypes[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID};
	Datum		values[6];
	char		nulls[6] = "      ";

	ContactParams(m, values, nulls);
	values[4] = Int64GetDatum(m->range.start);
	values[5] = Int64GetDatum(m->range.end);
	SyncExecute(psprintf("INSERT INTO %s AS m (" MACHINE_COLUMNS ")"
						 " VALUES ($1, $2, $3, $4, $5, $6)"
						 "%s"
						 " RETURNING *",
						 SyncObject("sync_machine"),
						 insert_only ? "" :
						 " ON CONFLICT (id) DO UPDATE SET"
						 "   hostname = EXCLUDED.hostname, sync_url = EXCLUDED.sync_url,"
						 "   sync_contact = EXCLUDED.sync_contact,"
						 "   sync_start = EXCLUDED.sync_start, sync_end = EXCLUDED.sync_end,"
						 "   updated_at = CASE"
						 "     WHEN (m.hostname, m.sync_url, m.sync_contact, m.sync_start, m.sync_end)"
						 "       IS DISTINCT FROM (EXCLUDED.hostname, EXCLUDED.sync_url,"
						 "         EXCLUDED.sync_contact, EXCLUDED.sync_start, EXCLUDED.sync_end)"
						 "     THEN pg_catalog.now() ELSE m.updated_at END"),
				6, argtypes, values, nulls);
}

/*
 * Change a known machine's hostname, URL and contact (never its range).
 */
static void
UpdateContact(const SyncMachine *m)
{
	Oid			argtypes[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = "    ";

	ContactParams(m, values, nulls);
	SyncExecute(psprintf("UPDATE %s SET hostname = $2, sync_url = $3, sync_contact = $4,"
						 "       updated_at = pg_catalog.now()"
						 " WHERE id = $1", SyncObject("sync_machine")),
				4, argtypes, values, nulls);
}

/*
 * Store an entry sync_register_machine prepared (SyncPrepareRegistration);
 * the new row is left in SPI_tuptable.
 */
void
SyncStoreMachine(const SyncMachine *m)
{
	StoreMachine(m, false);
}

/* Report a registry in an archive whose entries are not valid. */
static void
ReportInvalidEntry(int64 publisher)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("registry in the archive of machine " INT64_FORMAT " has an invalid entry",
					publisher),
			 errdetail("Every machine needs an id, a hostname, a valid range and, if any, an http, https or file URL without credentials.")));
}

/* Parse a bigint field of an archive's registry; false if it is not one. */
static bool
ParseInt64Field(const char *text, int64 *value)
{
	char	   *end;

	if (text == NULL || text[0] == '\0')
		return false;
	errno = 0;
	*value = strtoi64(text, &end, 10);
	return errno == 0 && *end == '\0';
}

/* Are two strings equal, NULL being equal only to NULL? */
static bool
SameText(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* Do two entries say the same? */
static bool
SameEntry(const SyncMachine *a, const SyncMachine *b)
{
	return a->id == b->id && SameText(a->hostname, b->hostname) &&
		SameText(a->url, b->url) && SameText(a->contact, b->contact) &&
		a->range.start == b->range.start && a->range.end == b->range.end;
}

/* qsort comparator: entries by id */
static int
CompareMachines(const void *a, const void *b)
{
	int64		x = ((const SyncMachine *) a)->id;
	int64		y = ((const SyncMachine *) b)->id;

	return (x > y) - (x < y);
}

/*
 * Read the entries of an archive's registry, staged as text in stage, in
 * order of id; each must pass the checks sync_register_machine applies.
 */
static SyncMachine *
ReadStagedRegistry(const char *stage, int64 publisher, int *n)
{
	SyncMachine *entries;
	int			i;

	*n = SyncExecute(psprintf("SELECT " MACHINE_COLUMNS " FROM %s", stage),
					 0, NULL, NULL, NULL);
	entries = palloc0(sizeof(SyncMachine) * (*n + 1));
	for (i = 0; i < *n; i++)
	{
		SyncMachine *m = &entries[i];

		m->hostname = SyncGetText(i, 2);
		m->url = SyncGetText(i, 3);
		m->contact = SyncGetText(i, 4);
		if (!ParseInt64Field(SyncGetText(i, 1), &m->id) ||
			!ParseInt64Field(SyncGetText(i, 5), &m->range.start) ||
			!ParseInt64Field(SyncGetText(i, 6), &m->range.end) ||
			m->hostname == NULL ||
			CheckFields(&m->id, m->hostname, m->url, &m->range) != MACHINE_OK)
			ReportInvalidEntry(publisher);
	}
	qsort(entries, *n, sizeof(SyncMachine), CompareMachines);
	for (i = 1; i < *n; i++)
		if (entries[i].id == entries[i - 1].id)
			ReportInvalidEntry(publisher);
	return entries;
}

/*
 * Merge the registry of an archive of machine publisher, staged as text in
 * stage: machines unknown here are added; a known machine's hostname, URL
 * and contact change only through its own archive or (authority) the
 * registry authority's; ranges never change through a pull, and one that
 * conflicts with what this server knows fails it.  Every entry is checked
 * before any is written.  Without the lock registrations take (pulls of
 * different machines run at once): a machine registered meanwhile fails
 * the insert, and an update never writes a range.  The caller is connected
 * to SPI.
 */
void
SyncMergeRegistry(const char *stage, int64 publisher, bool authority)
{
	int			n;
	SyncMachine *entries;
	bool	   *known;
	SyncMachine *here;
	int			i;

	entries = ReadStagedRegistry(stage, publisher, &n);
	known = palloc0(sizeof(bool) * (n + 1));
	here = palloc0(sizeof(SyncMachine) * (n + 1));

	for (i = 0; i < n; i++)
	{
		SyncMachine *a = &entries[i];
		SyncMachine other;
		SyncMachine *conflict = NULL;

		known[i] = SyncLookupMachine(a->id, &here[i]);
		if (known[i] && (here[i].range.start != a->range.start ||
						 here[i].range.end != a->range.end))
			conflict = &here[i];
		else if (OverlappingMachine(a->id, &a->range, &other))
			conflict = &other;
		if (conflict)
			ereport(ERROR,
					(errcode(ERRCODE_EXCLUSION_VIOLATION),
					 errmsg("registry in the archive of machine " INT64_FORMAT " conflicts with this server's",
							publisher),
					 errdetail("It gives machine " INT64_FORMAT " the range [" INT64_FORMAT ", " INT64_FORMAT "]; here machine " INT64_FORMAT " owns [" INT64_FORMAT ", " INT64_FORMAT "].",
							   a->id, a->range.start, a->range.end,
							   conflict->id, conflict->range.start, conflict->range.end),
					 errhint("Ranges never change through a pull; correct the registry with sync_register_machine() on the side that is wrong.")));
	}

	for (i = 0; i < n; i++)
	{
		SyncMachine *a = &entries[i];
		int64		other_id;

		if (known[i] && a->id != publisher && !authority)
			continue;			/* not this archive's to change */
		if (HostnameTaken(a->id, a->hostname, &other_id))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("registry in the archive of machine " INT64_FORMAT " conflicts with this server's",
							publisher),
					 errdetail("It gives machine " INT64_FORMAT " the hostname \"%s\", which machine " INT64_FORMAT " has here.",
							   a->id, a->hostname, other_id),
					 errhint("Hostnames identify machines; correct the registry with sync_register_machine() on the side that is wrong.")));
	}

	/* new machines are added; an entry that would not change is not written */
	for (i = 0; i < n; i++)
		if (!known[i])
			StoreMachine(&entries[i], true);
		else if ((entries[i].id == publisher || authority) &&
				 !SameEntry(&entries[i], &here[i]))
			UpdateContact(&entries[i]);
}

/* Keep this server's identity as it is until the transaction ends. */
void
SyncLockIdentity(void)
{
	SyncExecute(psprintf("LOCK TABLE %s IN EXCLUSIVE MODE",
						 SyncObject("sync_instance")), 0, NULL, NULL, NULL);
}

/*
 * Make this server machine id; the new row is left in SPI_tuptable.  The
 * caller checked what that takes.
 */
void
SyncStoreIdentity(int64 id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};

	SyncExecute(psprintf("INSERT INTO %s AS i (machine_id) VALUES ($1)"
						 " ON CONFLICT (singleton) DO UPDATE SET"
						 "   machine_id = $1,"
						 "   initialized_at = CASE WHEN i.machine_id = $1"
						 "     THEN i.initialized_at ELSE pg_catalog.now() END"
						 " RETURNING *",
						 SyncObject("sync_instance")),
				1, argtypes, values, NULL);
}

/*
 * sync_range(machine_id) returns (sync_start, sync_end)
 */
Datum
sync_range(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	SyncMachine machine;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			save_nestlevel;

	SyncEnter(fcinfo);

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	if (!SyncLookupMachine(id, &machine))
		SyncReportUnknownMachine(id);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);

	values[0] = Int64GetDatum(machine.range.start);
	values[1] = Int64GetDatum(machine.range.end);
	PG_RETURN_DATUM(SyncResultRow(fcinfo, values, nulls));
}
