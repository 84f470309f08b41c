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
 * (SyncMergeRegistry).  Both go through the same checks here, and write as
 * the tables' owner: the trigger sync_guard_identity (guard.c) lets no one
 * else but a superuser change them, so a role's grants never let it move a range
 * behind the back of the sequences confined to it.
 *
 * An archive describes its own machine; only the registry authority's
 * describes others.  What the authority says wins over what was learned
 * from archives before; over an entry registered here, and over this
 * server's own, it is set aside with a WARNING, never failing the pull.  A
 * file:// URL is never learned from an archive: only a superuser registers
 * one, for it reads this server's files.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "registry.h"

PG_FUNCTION_INFO_V1(sync_range);

/* how deep in sync's own writes of the registry this backend is */
static int	registry_writes = 0;

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
	MACHINE_BAD_TEXT,
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

/* Is url a file:// URL? */
static bool
IsFileUrl(const char *url)
{
	return pg_strncasecmp(url, "file:", 5) == 0;
}

/* What RegistryExecute runs. */
typedef struct RegistryWrite
{
	Oid			owner;
	SyncStatement st;
} RegistryWrite;

static void
RegistryWriteBody(void *arg)
{
	RegistryWrite *w = (RegistryWrite *) arg;

	SyncRunAs(w->owner, SyncExecuteStatement, &w->st);
}

/*
 * Run a statement that writes (or locks) sync_machine or sync_instance: as
 * their owner, with sync_guard_identity's consent.  Returns the rows
 * processed, with the rows in SPI_tuptable.  The caller is connected to
 * SPI.
 */
static int
RegistryExecute(const char *sql, int nargs, Oid *argtypes, Datum *values,
				const char *nulls)
{
	RegistryWrite w = {SyncRelationOwner(get_relname_relid("sync_machine", SyncSchemaOid())),
	{sql, nargs, argtypes, values, nulls, 0, NULL}};

	registry_writes++;
	PG_TRY();
	{
		RegistryWriteBody(&w);
	}
	PG_FINALLY();
	{
		registry_writes--;
	}
	PG_END_TRY();
	return w.st.rows;
}

/*
 * Is one of sync's own functions writing the registry or the identity now?
 * (sync_guard_identity lets only those writes through.)
 */
bool
SyncRegistryWriting(void)
{
	return registry_writes > 0;
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
	if ((hostname && !SyncIsPlainText(hostname)) || (url && !SyncIsPlainText(url)))
		return MACHINE_BAD_TEXT;
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
		case MACHINE_BAD_TEXT:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("hostname and sync_url must not contain control characters")));
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
	if (reg->url && IsFileUrl(reg->url) && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may register a file:// sync_url"),
				 errdetail("A pull reads a file:// URL from this server's own file system.")));

	/* one registration at a time, so that the overlap check holds */
	RegistryExecute(psprintf("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE",
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
 * Insert an entry, learned from the archive of machine learned_from (-1:
 * registered here); without insert_only, an entry that exists is
 * replaced, as registered here.  The row is left in SPI_tuptable.
 * updated_at moves only when something changed.  With insert_only, an
 * entry that exists meanwhile fails the statement.
 */
static void
StoreMachine(const SyncMachine *m, bool insert_only, int64 learned_from)
{
	Oid			argtypes[7] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		values[7];
	char		nulls[7] = "       ";

	ContactParams(m, values, nulls);
	values[4] = Int64GetDatum(m->range.start);
	values[5] = Int64GetDatum(m->range.end);
	values[6] = Int64GetDatum(learned_from);
	nulls[6] = learned_from < 0 ? 'n' : ' ';
	RegistryExecute(psprintf("INSERT INTO %s AS m (" MACHINE_COLUMNS ", learned_from)"
							 " VALUES ($1, $2, $3, $4, $5, $6, $7)"
							 "%s"
							 " RETURNING *",
							 SyncObject("sync_machine"),
							 insert_only ? "" :
							 " ON CONFLICT (id) DO UPDATE SET"
							 "   hostname = EXCLUDED.hostname, sync_url = EXCLUDED.sync_url,"
							 "   sync_contact = EXCLUDED.sync_contact,"
							 "   sync_start = EXCLUDED.sync_start, sync_end = EXCLUDED.sync_end,"
							 "   learned_from = EXCLUDED.learned_from,"
							 "   updated_at = CASE"
							 "     WHEN (m.hostname, m.sync_url, m.sync_contact, m.sync_start, m.sync_end)"
							 "       IS DISTINCT FROM (EXCLUDED.hostname, EXCLUDED.sync_url,"
							 "         EXCLUDED.sync_contact, EXCLUDED.sync_start, EXCLUDED.sync_end)"
							 "     THEN pg_catalog.now() ELSE m.updated_at END"),
					7, argtypes, values, nulls);
}

/*
 * Change a known machine's hostname, URL (unless m has none: a URL is
 * never cleared by an archive) and contact; with range, its range too, as
 * learned from the archive of machine learned_from.
 */
static void
UpdateEntry(const SyncMachine *m, bool range, int64 learned_from)
{
	Oid			argtypes[7] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		values[7];
	char		nulls[7] = "       ";

	ContactParams(m, values, nulls);
	values[4] = Int64GetDatum(m->range.start);
	values[5] = Int64GetDatum(m->range.end);
	values[6] = Int64GetDatum(learned_from);
	RegistryExecute(psprintf("UPDATE %s SET hostname = $2,"
							 "       sync_url = coalesce($3, sync_url), sync_contact = $4,"
							 "%s"
							 "       updated_at = pg_catalog.now()"
							 " WHERE id = $1",
							 SyncObject("sync_machine"),
							 range ? " sync_start = $5, sync_end = $6, learned_from = $7," : ""),
					range ? 7 : 4, argtypes, values, nulls);
}

/*
 * Store an entry sync_register_machine prepared (SyncPrepareRegistration);
 * the new row is left in SPI_tuptable.
 */
void
SyncStoreMachine(const SyncMachine *m)
{
	StoreMachine(m, false, -1);
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

/* An entry of an archive's registry, and whether it passes the checks. */
typedef struct StagedEntry
{
	SyncMachine m;
	bool		valid;
} StagedEntry;

/* qsort comparator: staged entries by id */
static int
CompareStaged(const void *a, const void *b)
{
	return CompareMachines(&((const StagedEntry *) a)->m, &((const StagedEntry *) b)->m);
}

/*
 * Read the entries of an archive's registry, staged as text in stage, in
 * order of id, each marked valid if it passes the checks
 * sync_register_machine applies (an invalid one has id -1).  An id listed
 * twice fails the pull.
 */
static StagedEntry *
ReadStagedRegistry(const char *stage, int64 publisher, int *n)
{
	StagedEntry *entries;
	int			i;

	*n = SyncExecute(psprintf("SELECT " MACHINE_COLUMNS " FROM %s", stage),
					 0, NULL, NULL, NULL);
	entries = palloc0(sizeof(StagedEntry) * (*n + 1));
	for (i = 0; i < *n; i++)
	{
		SyncMachine *m = &entries[i].m;

		m->hostname = SyncGetText(i, 2);
		m->url = SyncGetText(i, 3);
		m->contact = SyncGetText(i, 4);
		entries[i].valid = ParseInt64Field(SyncGetText(i, 1), &m->id) &&
			ParseInt64Field(SyncGetText(i, 5), &m->range.start) &&
			ParseInt64Field(SyncGetText(i, 6), &m->range.end) &&
			m->hostname != NULL &&
			CheckFields(&m->id, m->hostname, m->url, &m->range) == MACHINE_OK;
		if (!entries[i].valid)
			m->id = -1;
	}
	qsort(entries, *n, sizeof(StagedEntry), CompareStaged);
	for (i = 1; i < *n; i++)
		if (entries[i].m.id >= 0 && entries[i].m.id == entries[i - 1].m.id)
			ReportInvalidEntry(publisher);
	return entries;
}

/*
 * May the entry of machine id be replaced by what the registry authority
 * says: was it learned from an archive, is it not this server, and has this
 * server never pulled it, nor been told how to reach it or when?
 */
static bool
Replaceable(int64 id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};

	return SyncExecute(psprintf("SELECT 1 FROM %s m WHERE m.id = $1 AND m.learned_from IS NOT NULL"
								"   AND NOT EXISTS (SELECT 1 FROM %s WHERE machine_id = $1)"
								"   AND NOT EXISTS (SELECT 1 FROM %s WHERE machine_id = $1)"
								"   AND NOT EXISTS (SELECT 1 FROM %s WHERE machine_id = $1)"
								"   AND NOT EXISTS (SELECT 1 FROM %s WHERE remote = $1)",
								SyncObject("sync_machine"), SyncObject("sync_instance"),
								SyncObject("sync_pull_state"), SyncObject("sync_remote"),
								SyncObject("sync_job")),
					   1, argtypes, values, NULL) > 0;
}

/* Set aside what the registry authority says about a machine, with why. */
static void
SetAside(int64 authority, const SyncMachine *a, const char *why)
{
	ereport(WARNING,
			(errmsg("registry authority (machine " INT64_FORMAT ") says machine " INT64_FORMAT " is %s with [" INT64_FORMAT ", " INT64_FORMAT "]; that is set aside",
					authority, a->id, a->hostname, a->range.start, a->range.end),
			 errdetail("%s", why),
			 errhint("Correct the registry with sync_register_machine() on the side that is wrong.")));
}

/*
 * Remove the entry of machine m, learned from an archive and never used
 * here, which stands in the way of what the registry authority says about
 * machine id.
 */
static void
DeleteLearned(const SyncMachine *m, int64 id, int64 authority)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(m->id)};

	ereport(WARNING,
			(errmsg("machine " INT64_FORMAT " (%s) is removed from the registry",
					m->id, m->hostname),
			 errdetail("It was learned from an archive and never pulled here, and the registry authority (machine " INT64_FORMAT ") gives its range or hostname to machine " INT64_FORMAT ".",
					   authority, id)));
	RegistryExecute(psprintf("DELETE FROM %s WHERE id = $1", SyncObject("sync_machine")),
					1, argtypes, values, NULL);
}

/*
 * Take in what the registry authority says about machine a (not this
 * server, nor the authority itself): entries learned from archives that
 * stand in its way and were never used here give way; an entry
 * registered here does not.
 */
static void
MergeAuthorityEntry(const SyncMachine *a, int64 authority)
{
	SyncMachine here;
	SyncMachine other;
	int64		other_id;
	bool		known = SyncLookupMachine(a->id, &here);

	if (known && (here.range.start != a->range.start || here.range.end != a->range.end) &&
		!Replaceable(a->id))
	{
		SetAside(authority, a, psprintf("Here machine " INT64_FORMAT " owns [" INT64_FORMAT ", " INT64_FORMAT "], registered here or already in use.",
										a->id, here.range.start, here.range.end));
		return;
	}
	while (OverlappingMachine(a->id, &a->range, &other))
	{
		if (!Replaceable(other.id))
		{
			SetAside(authority, a, psprintf("Machine " INT64_FORMAT " (%s) owns [" INT64_FORMAT ", " INT64_FORMAT "] here.",
											other.id, other.hostname, other.range.start, other.range.end));
			return;
		}
		DeleteLearned(&other, a->id, authority);
	}
	while (HostnameTaken(a->id, a->hostname, &other_id))
	{
		SyncLookupMachine(other_id, &other);
		if (!Replaceable(other_id))
		{
			SetAside(authority, a, psprintf("Machine " INT64_FORMAT " has hostname \"%s\" here.",
											other_id, a->hostname));
			return;
		}
		DeleteLearned(&other, a->id, authority);
	}
	if (!known)
		StoreMachine(a, true, authority);
	else if (!SameEntry(a, &here))
		UpdateEntry(a, true, authority);
}

/*
 * Merge the registry of an archive of machine publisher, staged as text in
 * stage.  An archive describes its own machine: its hostname, URL and
 * contact are taken (its range is what the pull already checked).  Only
 * the registry authority's archive (authority) describes others: machines
 * unknown here are added, and what it says wins over entries learned from
 * archives before (MergeAuthorityEntry).  A file:// URL is never taken.
 * Without the lock registrations take (pulls of different machines run at
 * once): a machine registered meanwhile fails the insert.  The caller is
 * connected to SPI.
 */
void
SyncMergeRegistry(const char *stage, int64 publisher, bool authority)
{
	int			n;
	StagedEntry *entries = ReadStagedRegistry(stage, publisher, &n);
	SyncMachine local;
	bool		has_local = SyncLocalMachine(&local);
	bool		own_seen = false;
	int			i;

	for (i = 0; i < n; i++)
	{
		SyncMachine *a = &entries[i].m;
		SyncMachine here;
		int64		other_id;

		if (!entries[i].valid)
			continue;			/* if it was the publisher's own: below */
		if (a->id == publisher)
			own_seen = true;
		if (a->id != publisher && !authority)
			continue;			/* not this archive's to say */
		if (has_local && a->id == local.id)
			continue;			/* this server's own entry is its own */
		if (a->url && IsFileUrl(a->url))
			a->url = NULL;
		if (a->id != publisher)
		{
			MergeAuthorityEntry(a, publisher);
			continue;
		}
		if (!SyncLookupMachine(a->id, &here))
			continue;			/* unregistered meanwhile: nothing to update */
		if (here.range.start != a->range.start || here.range.end != a->range.end)
			ereport(ERROR,
					(errcode(ERRCODE_EXCLUSION_VIOLATION),
					 errmsg("registry in the archive of machine " INT64_FORMAT " conflicts with this server's",
							publisher),
					 errdetail("It gives machine " INT64_FORMAT " the range [" INT64_FORMAT ", " INT64_FORMAT "]; here it owns [" INT64_FORMAT ", " INT64_FORMAT "].",
							   a->id, a->range.start, a->range.end,
							   here.range.start, here.range.end),
					 errhint("Ranges never change through a pull; correct the registry with sync_register_machine() on the side that is wrong.")));
		if (HostnameTaken(a->id, a->hostname, &other_id))
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("registry in the archive of machine " INT64_FORMAT " conflicts with this server's",
							publisher),
					 errdetail("It gives machine " INT64_FORMAT " the hostname \"%s\", which machine " INT64_FORMAT " has here.",
							   a->id, a->hostname, other_id),
					 errhint("Hostnames identify machines; correct the registry with sync_register_machine() on the side that is wrong.")));
		if (a->url == NULL)
			a->url = here.url;
		if (!SameEntry(a, &here))
			UpdateEntry(a, false, -1);
	}
	/* an archive that does not describe its own machine validly is broken */
	if (!own_seen)
		ReportInvalidEntry(publisher);
}

/* Keep this server's identity as it is until the transaction ends. */
void
SyncLockIdentity(void)
{
	RegistryExecute(psprintf("LOCK TABLE %s IN EXCLUSIVE MODE",
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

	/* this server's own entry is registered here, whatever taught it */
	RegistryExecute(psprintf("UPDATE %s SET learned_from = NULL WHERE id = $1 AND learned_from IS NOT NULL",
							 SyncObject("sync_machine")),
					1, argtypes, values, NULL);
	RegistryExecute(psprintf("INSERT INTO %s AS i (machine_id) VALUES ($1)"
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
