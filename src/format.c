/*-------------------------------------------------------------------------
 *
 * format.c
 *		The files sync publishes, written and read in one place.
 *
 * A machine's dump directory holds its archives and an index:
 *	  sync-<machine>-<time>.tar.zst	an archive (tar + zstd, archive.c)
 *	  sync-index.json				names the newest archive, its size and
 *									SHA-256, for subscribers to poll
 * and an archive holds, as tar members, in this order:
 *	  header.json					what follows: source, tables, columns, keys
 *	  registry/000001.copy			the machine registry
 *	  tables/NNNN-<name>/NNNNNN.copy each table's rows, parents first
 *	  manifest.json					the header plus files, counts, checksums
 * Rows are COPY text in the publisher's database encoding, written in the
 * output formats helpers.c pins (SyncPinSettings).  doc/dump.md describes
 * every field.
 *
 * The writers (for sync_dump) and the readers (for sync_pull) of each file
 * stand side by side here, so that a change to the format is one diff.  The
 * readers trust nothing: a document that is not what this version writes
 * is an ERROR naming the machine it came from.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "format.h"

const char *const sync_registry_columns[SYNC_REGISTRY_NCOLUMNS][2] = {
	{"id", "bigint"}, {"hostname", "text"}, {"sync_url", "text"},
	{"sync_contact", "text"}, {"sync_start", "bigint"}, {"sync_end", "bigint"}
};

/* the longest table directory name after "tables/NNNN-" */
#define TABLE_DIR_MAX 60

/*
 * A timestamp in UTC, as 2026-11-23T18:00:00.123456Z or, compact (for file
 * names), as 20261123T180000123456Z.
 */
char *
SyncFormatTime(TimestampTz ts, bool compact)
{
	pg_time_t	t = timestamptz_to_time_t(ts);
	int			usec = (int) (ts % USECS_PER_SEC);
	char		buf[64];

	if (usec < 0)
		usec += USECS_PER_SEC;
	pg_strftime(buf, sizeof(buf), compact ? "%Y%m%dT%H%M%S" : "%Y-%m-%dT%H:%M:%S",
				pg_gmtime(&t));
	return psprintf(compact ? "%s%06dZ" : "%s.%06dZ", buf, usec);
}

/* File name of a machine's archive of a snapshot. */
char *
SyncArchiveFileName(int64 machine_id, TimestampTz snapshot_time)
{
	return psprintf("sync-" INT64_FORMAT "-%s.tar.zst", machine_id,
					SyncFormatTime(snapshot_time, true));
}

/*
 * Is filename the name of one of machine_id's archives, and nothing that
 * could reach outside the directory it is in?
 */
bool
SyncIsArchiveFileOf(const char *filename, int64 machine_id)
{
	char	   *prefix = psprintf("sync-" INT64_FORMAT "-", machine_id);
	size_t		len = strlen(filename);

	return strncmp(filename, prefix, strlen(prefix)) == 0 &&
		len > 8 && strcmp(filename + len - 8, ".tar.zst") == 0 &&
		strchr(filename, '/') == NULL && strstr(filename, "..") == NULL;
}

/*
 * Name of a table's directory in the archive: its position and its name,
 * reduced to characters that are safe in any file system.
 */
char *
SyncTableDirectory(int position, const char *schema, const char *name)
{
	char	   *qual = psprintf("%s.%s", schema, name);
	char	   *p;

	if (strlen(qual) > TABLE_DIR_MAX)
		qual[TABLE_DIR_MAX] = '\0';
	for (p = qual; *p; p++)
		if (!isalnum((unsigned char) *p) && *p != '_' && *p != '.' && *p != '-')
			*p = '_';
	return psprintf("tables/%04d-%s", position, qual);
}

/* Name of the n-th file (from 1) of a table's COPY text. */
char *
SyncChunkName(const char *dir, int n)
{
	return psprintf("%s/%06d.copy", dir, n);
}

/* Does archive member name belong to directory dir? */
bool
SyncMemberOf(const char *member, const char *dir)
{
	size_t		len = strlen(dir);

	return strncmp(member, dir, len) == 0 && member[len] == '/';
}

/* bytes that COPY text escapes (and the terminating NUL) */
static const bool copy_special[256] = {
	[0] = true, ['\b'] = true, ['\f'] = true, ['\n'] = true, ['\r'] = true,
	['\t'] = true, ['\v'] = true, ['\\'] = true,
};

/*
 * Append a value in COPY text format: backslash and control characters
 * escaped as COPY does, everything else as is, in runs.
 */
void
SyncAppendCopyValue(StringInfo buf, const char *s)
{
	const char *start = s;

	for (;;)
	{
		const char *esc;

		while (!copy_special[(unsigned char) *s])
			s++;
		switch (*s)
		{
			case '\0':
				appendBinaryStringInfo(buf, start, s - start);
				return;
			case '\\':
				esc = "\\\\";
				break;
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '\v':
				esc = "\\v";
				break;
			default:
				pg_unreachable();
		}
		appendBinaryStringInfo(buf, start, s - start);
		appendBinaryStringInfo(buf, esc, 2);
		start = ++s;
	}
}

/* Append a JSON string value, or null. */
static void
JsonString(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

/*
 * Append the manifest entry of one table; with results, also its files,
 * counts and checksum (the header, written first, has no results yet).
 */
static void
ManifestTable(StringInfo buf, const SyncArchiveTable *t, bool results)
{
	ListCell   *lc;
	int			i;

	appendStringInfoString(buf, "{\"schema\": ");
	JsonString(buf, t->schema);
	appendStringInfoString(buf, ", \"name\": ");
	JsonString(buf, t->name);
	appendStringInfoString(buf, ", \"key\": ");
	JsonString(buf, t->key);
	appendStringInfoString(buf, ", \"columns\": [");
	for (i = 0; i < t->ncolumns; i++)
	{
		appendStringInfo(buf, "%s{\"name\": ", i ? ", " : "");
		JsonString(buf, t->columns[i].name);
		appendStringInfoString(buf, ", \"type\": ");
		JsonString(buf, t->columns[i].type);
		if (t->columns[i].anonymized)
			appendStringInfoString(buf, ", \"anonymized\": true");
		appendStringInfoChar(buf, '}');
	}
	appendStringInfo(buf, "], \"dir\": ");
	JsonString(buf, t->dir);
	if (!results)
	{
		appendStringInfoChar(buf, '}');
		return;
	}
	appendStringInfoString(buf, ", \"files\": [");
	foreach(lc, t->files)
	{
		if (lc != list_head(t->files))
			appendStringInfoString(buf, ", ");
		JsonString(buf, lfirst(lc));
	}
	appendStringInfo(buf, "], \"rows\": " INT64_FORMAT ", \"excluded\": " INT64_FORMAT
					 ", \"sha256\": \"%s\"}",
					 t->rows, t->excluded, t->sha256);
}

/*
 * The header (without results) or the manifest (with them): what the
 * archive holds, where from, and every table's files, counts and checksum.
 */
char *
SyncBuildManifest(const SyncArchiveHeader *h, bool results)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\n  \"format\": %d,\n  \"extension_version\": ",
					 SYNC_FORMAT_VERSION);
	JsonString(&buf, SYNC_EXTENSION_VERSION);
	appendStringInfo(&buf, ",\n  \"server_version_num\": %d", PG_VERSION_NUM);
	appendStringInfoString(&buf, ",\n  \"encoding\": ");
	JsonString(&buf, h->encoding);
	appendStringInfo(&buf, ",\n  \"source\": {\"machine\": " INT64_FORMAT ", \"hostname\": ",
					 h->machine_id);
	JsonString(&buf, h->hostname);
	appendStringInfo(&buf, ", \"sync_start\": " INT64_FORMAT ", \"sync_end\": " INT64_FORMAT "}",
					 h->range.start, h->range.end);
	appendStringInfo(&buf, ",\n  \"level\": %d,\n  \"anonymized\": %s,\n  \"unchecked\": %s",
					 h->level, h->anonymized ? "true" : "false",
					 h->unchecked ? "true" : "false");
	appendStringInfoString(&buf, ",\n  \"snapshot_time\": ");
	JsonString(&buf, SyncFormatTime(h->snapshot_time, false));
	appendStringInfoString(&buf, ",\n  \"registry\": ");
	ManifestTable(&buf, h->registry, results);
	appendStringInfoString(&buf, ",\n  \"tables\": [");
	for (i = 0; i < h->ntables; i++)
	{
		appendStringInfoString(&buf, i ? ",\n    " : "\n    ");
		ManifestTable(&buf, h->tables[i], results);
	}
	appendStringInfoString(&buf, "\n  ]\n}\n");
	return buf.data;
}

/*
 * The index, which names the newest archive.
 */
char *
SyncBuildIndex(const SyncIndex *index)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"format\": %d, \"machine\": " INT64_FORMAT ", \"archive\": ",
					 SYNC_FORMAT_VERSION, index->machine_id);
	JsonString(&buf, index->archive);
	appendStringInfo(&buf, ", \"size\": " UINT64_FORMAT ", \"sha256\": \"%s\", \"created_at\": ",
					 index->size, index->sha256);
	JsonString(&buf, SyncFormatTime(index->created_at, false));
	appendStringInfo(&buf, ", \"level\": %d, \"anonymized\": %s, \"unchecked\": %s}\n",
					 index->level, index->anonymized ? "true" : "false",
					 index->unchecked ? "true" : "false");
	return buf.data;
}

/*
 * Report a published document that is not what this version writes.
 */
void
SyncBadArchive(int64 machine_id, const char *what, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("%s of the archive of machine " INT64_FORMAT " is not valid",
					what, machine_id),
			 errdetail("%s", detail)));
}

/*
 * Run a query over a JSON document given as text ($1), in a subtransaction:
 * a document that is not JSON, or not of the shape the query expects (a
 * value that does not cast), makes it fail.  Returns the number of rows,
 * with the rows in SPI_tuptable, or -1 on such a failure (a data
 * exception), whose error is discarded with the subtransaction for the
 * caller to report its own; any other error is raised again.  The caller is
 * connected to SPI.
 */
static int
JsonQuery(const char *sql, const char *text)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(text)};
	SyncStatement st = {sql, 1, argtypes, values, NULL, 0};
	ErrorData  *edata = SyncRunInSubtransaction(SyncExecuteStatement, NULL, &st);

	if (edata == NULL)
		return st.rows;
	/* a cancel, or anything else that is not about the data, goes on up */
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
		ReThrowError(edata);
	FreeErrorData(edata);
	return -1;
}

#define INDEX_SQL \
	"SELECT (j->>'format')::int8, (j->>'machine')::int8, j->>'archive'," \
	"       (j->>'size')::int8, j->>'sha256'" \
	"  FROM (SELECT $1::pg_catalog.jsonb AS j) i"

/*
 * The archive an index names, or NULL if it is not an index this version
 * reads: a dump keeps what the previous index named, if anything.
 */
char *
SyncIndexArchive(const char *text)
{
	if (JsonQuery(INDEX_SQL, text) != 1)
		return NULL;
	return SyncGetText(0, 3);
}

/*
 * Read the index fetched from url: it must be of this format, of machine
 * machine_id, and name an archive of that machine with its size and
 * checksum.
 */
void
SyncReadIndex(const char *text, int64 machine_id, const char *url,
			  SyncIndex *index)
{
	int64		format = 0;
	int64		bytes = -1;

	if (JsonQuery(INDEX_SQL, text) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("index of machine " INT64_FORMAT " is not valid JSON",
						machine_id),
				 errdetail("Fetched from %s.", url)));
	memset(index, 0, sizeof(*index));
	index->machine_id = -1;
	SyncGetInt64(0, 1, &format);
	SyncGetInt64(0, 2, &index->machine_id);
	index->archive = SyncGetText(0, 3);
	SyncGetInt64(0, 4, &bytes);
	index->sha256 = SyncGetText(0, 5);

	if (format != SYNC_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index of machine " INT64_FORMAT " has format " INT64_FORMAT ", which this version does not read",
						machine_id, format),
				 errhint("This version of sync reads format %d; upgrade the extension here or there.",
						 SYNC_FORMAT_VERSION)));
	if (index->machine_id != machine_id)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is the index of machine " INT64_FORMAT ", not of machine " INT64_FORMAT,
						url, index->machine_id, machine_id),
				 errhint("Check the sync_url of machine " INT64_FORMAT ".", machine_id)));
	if (index->archive == NULL || !SyncIsArchiveFileOf(index->archive, machine_id) ||
		bytes < 0 || index->sha256 == NULL || strlen(index->sha256) != 64)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("index of machine " INT64_FORMAT " is not valid", machine_id),
				 errdetail("It must name an archive sync-" INT64_FORMAT "-*.tar.zst with its size and SHA-256.",
						   machine_id)));
	index->size = (uint64) bytes;
}

/* Text of a text[] value of the last SPI result, as a C array. */
static char **
TextArray(int row, int col, int *n)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	char	  **result;
	int			i;

	if (isnull)
	{
		*n = 0;
		return NULL;
	}
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	result = palloc(sizeof(char *) * (*n + 1));
	for (i = 0; i < *n; i++)
		result[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return result;
}

/* SQL: the description of table e of a header, as TableFromRow reads it */
#define TABLE_COLUMNS_SQL \
	"e->>'schema', e->>'name', e->>'key', e->>'dir'," \
	" ARRAY(SELECT c->>'name' FROM pg_catalog.jsonb_array_elements(e->'columns') WITH ORDINALITY x(c, n) ORDER BY n)," \
	" ARRAY(SELECT c->>'type' FROM pg_catalog.jsonb_array_elements(e->'columns') WITH ORDINALITY x(c, n) ORDER BY n)"

/* Fill a table from row of a header query, checking what it says. */
static void
TableFromRow(int64 machine_id, SyncArchiveTable *t, int row)
{
	char	  **names;
	char	  **types;
	int			ntypes;
	int			i;

	memset(t, 0, sizeof(*t));
	t->schema = SyncGetText(row, 1);
	t->name = SyncGetText(row, 2);
	t->key = SyncGetText(row, 3);
	t->dir = SyncGetText(row, 4);
	names = TextArray(row, 5, &t->ncolumns);
	types = TextArray(row, 6, &ntypes);
	t->rows = t->excluded = -1;
	if (t->schema == NULL || t->name == NULL || t->key == NULL ||
		t->dir == NULL || t->ncolumns == 0 || ntypes != t->ncolumns)
		SyncBadArchive(machine_id, "header", "A table lacks its name, key, directory or columns.");
	t->columns = palloc0(sizeof(SyncColumn) * t->ncolumns);
	t->key_index = -1;
	for (i = 0; i < t->ncolumns; i++)
	{
		if (names[i] == NULL || types[i] == NULL || names[i][0] == '\0')
			SyncBadArchive(machine_id, "header", "A column lacks its name or type.");
		t->columns[i].name = names[i];
		t->columns[i].type = types[i];
		if (strcmp(names[i], t->key) == 0)
			t->key_index = i;
	}
	/* the registry's, or "tables/" and one plain name */
	if (strcmp(t->dir, SYNC_REGISTRY_DIR) != 0 &&
		(strncmp(t->dir, "tables/", 7) != 0 || t->dir[7] == '\0' ||
		 strchr(t->dir + 7, '/') != NULL || strstr(t->dir, "..") != NULL))
		SyncBadArchive(machine_id, "header", "A table's directory is not one sync writes.");
	if (t->key_index < 0)
		SyncBadArchive(machine_id, "header",
					   psprintf("The key of table %s.%s is not among its columns.",
								t->schema, t->name));
	t->qualname = quote_qualified_identifier(t->schema, t->name);
}

/*
 * Read header.json of an archive fetched from machine_id, which owns range
 * here: format, source machine and range, encoding, and the tables with
 * their columns.  Allocates the tables.
 */
void
SyncReadHeader(const char *text, int64 machine_id, const SyncRange *range,
			   SyncArchiveHeader *h)
{
	SyncArchiveTable *tables;
	int64		format = 0;
	int			n;
	int			i;

	memset(h, 0, sizeof(*h));
	h->machine_id = -1;
	if (JsonQuery("SELECT (j->>'format')::int8, (j#>>'{source,machine}')::int8,"
				  "       (j#>>'{source,sync_start}')::int8, (j#>>'{source,sync_end}')::int8,"
				  "       j->>'encoding'"
				  "  FROM (SELECT $1::pg_catalog.jsonb AS j) h",
				  text) != 1)
		SyncBadArchive(machine_id, "header", "It is not valid JSON of the expected shape.");
	SyncGetInt64(0, 1, &format);
	SyncGetInt64(0, 2, &h->machine_id);
	SyncGetInt64(0, 3, &h->range.start);
	SyncGetInt64(0, 4, &h->range.end);
	h->encoding = SyncGetText(0, 5);

	if (format != SYNC_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("archive of machine " INT64_FORMAT " has format " INT64_FORMAT ", which this version does not read",
						machine_id, format)));
	if (h->machine_id != machine_id)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("archive is machine " INT64_FORMAT "'s, not machine " INT64_FORMAT "'s",
						h->machine_id, machine_id),
				 errdetail("It was fetched from the sync_url of machine " INT64_FORMAT ".", machine_id),
				 errhint("Check the sync_url of machine " INT64_FORMAT ".", machine_id)));
	if (h->range.start != range->start || h->range.end != range->end)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("archive of machine " INT64_FORMAT " is for the range [" INT64_FORMAT ", " INT64_FORMAT "], but here machine " INT64_FORMAT " owns [" INT64_FORMAT ", " INT64_FORMAT "]",
						machine_id, h->range.start, h->range.end, machine_id,
						range->start, range->end),
				 errhint("The registries of the two servers disagree; correct the range with sync_register_machine() on the side that is wrong.")));
	if (h->encoding == NULL || pg_char_to_encoding(h->encoding) < 0)
		SyncBadArchive(machine_id, "header", "It names no known encoding.");

	n = JsonQuery("SELECT " TABLE_COLUMNS_SQL
				  "  FROM pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb->'tables') WITH ORDINALITY t(e, ord)"
				  " ORDER BY ord",
				  text);
	if (n < 0)
		SyncBadArchive(machine_id, "header", "It is not valid JSON of the expected shape.");
	h->ntables = n;
	tables = palloc0(sizeof(SyncArchiveTable) * (n + 1));
	h->tables = palloc0(sizeof(SyncArchiveTable *) * (n + 1));
	for (i = 0; i < n; i++)
	{
		TableFromRow(machine_id, &tables[i], i);
		h->tables[i] = &tables[i];
	}
	for (i = 0; i < n; i++)
	{
		int			j;

		for (j = 0; j < i; j++)
			if (strcmp(tables[i].dir, tables[j].dir) == 0 ||
				strcmp(tables[i].qualname, tables[j].qualname) == 0)
				SyncBadArchive(machine_id, "header",
							   psprintf("It lists %s twice.", tables[i].qualname));
	}

	if (JsonQuery("SELECT " TABLE_COLUMNS_SQL
				  "  FROM (SELECT $1::pg_catalog.jsonb->'registry' AS e) r WHERE e IS NOT NULL",
				  text) != 1)
		SyncBadArchive(machine_id, "header", "It describes no registry.");
	h->registry = palloc0(sizeof(SyncArchiveTable));
	TableFromRow(machine_id, h->registry, 0);
	for (i = 0; i < n; i++)
		if (strcmp(tables[i].dir, h->registry->dir) == 0)
			SyncBadArchive(machine_id, "header", "A table uses the registry's directory.");
}

/*
 * Read manifest.json: every table's row count and checksum, into the
 * tables of the header read before (matched by directory).
 */
void
SyncReadManifest(const char *text, SyncArchiveHeader *h)
{
	int			n;
	int			i;

	n = JsonQuery("SELECT e->>'dir', (e->>'rows')::int8, e->>'sha256'"
				  "  FROM pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb->'tables') e"
				  " UNION ALL "
				  "SELECT e->>'dir', (e->>'rows')::int8, e->>'sha256'"
				  "  FROM (SELECT $1::pg_catalog.jsonb->'registry' AS e) r",
				  text);
	if (n < 0)
		SyncBadArchive(h->machine_id, "manifest", "It is not valid JSON of the expected shape.");
	for (i = 0; i < n; i++)
	{
		char	   *dir = SyncGetText(i, 1);
		char	   *sha256 = SyncGetText(i, 3);
		SyncArchiveTable *t = NULL;
		int			j;

		if (dir && strcmp(dir, h->registry->dir) == 0)
			t = h->registry;
		for (j = 0; j < h->ntables && t == NULL; j++)
			if (dir && strcmp(dir, h->tables[j]->dir) == 0)
				t = h->tables[j];
		if (t == NULL)
			SyncBadArchive(h->machine_id, "manifest", "It lists a table the header does not.");
		if (!SyncGetInt64(i, 2, &t->rows))
			t->rows = -1;
		/* a checksum of any other length matches none */
		strlcpy(t->sha256, (sha256 && strlen(sha256) == SYNC_SHA256_HEX_LEN - 1) ? sha256 : "",
				sizeof(t->sha256));
	}
}

/*
 * Start scanning the COPY text of table t of an archive of machine_id,
 * which owns range; without check_keys, rows are only counted.
 */
void
SyncKeyScanBegin(SyncKeyScan *scan, int64 machine_id, const SyncRange *range,
				 const SyncArchiveTable *t, bool check_keys)
{
	memset(scan, 0, sizeof(*scan));
	scan->machine_id = machine_id;
	scan->range = *range;
	scan->table = t;
	scan->check_keys = check_keys;
}

/* A row ended: check its key. */
static void
EndOfRow(SyncKeyScan *scan)
{
	char	   *end;
	int64		key;
	int			i;

	if (!scan->check_keys)
	{
		scan->rows++;
		return;
	}
	scan->key[scan->keylen] = '\0';
	/* digits only (an optional minus): what integer output writes */
	for (i = 0; i < scan->keylen; i++)
		if (!isdigit((unsigned char) scan->key[i]) && !(i == 0 && scan->key[i] == '-'))
			scan->keylong = true;
	errno = 0;
	key = strtoi64(scan->key, &end, 10);
	if (scan->keylong || scan->keylen == 0 || *end != '\0' || errno != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("archive of machine " INT64_FORMAT " has a row of table %s whose key \"%s\" is not an integer",
						scan->machine_id, scan->table->qualname,
						scan->keylong ? "(too long)" : scan->key)));
	if (key < scan->range.start || key > scan->range.end)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("archive of machine " INT64_FORMAT " has a row of table %s with key " INT64_FORMAT ", outside the machine's range [" INT64_FORMAT ", " INT64_FORMAT "]",
						scan->machine_id, scan->table->qualname, key,
						scan->range.start, scan->range.end),
				 errdetail("A machine may publish only rows of its own range; nothing was applied.")));
	scan->rows++;
}

/*
 * Split COPY text into rows and fields exactly as COPY does for what
 * SyncAppendCopyValue writes: a backslash escapes the byte after it (so an
 * escaped tab or newline is data), a tab ends a field, a newline a row.
 * Anything COPY would read differently — a carriage return, an end-of-data
 * marker \. — is refused: the rows checked must be the rows loaded.
 */
void
SyncKeyScanData(SyncKeyScan *scan, const char *data, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = data[i];
		bool		in_key = (scan->field == scan->table->key_index);

		if (scan->escape)
		{
			if (scan->linepos == 1 && c == '.')
				SyncBadArchive(scan->machine_id, "archive",
							   psprintf("The data of %s holds an end-of-data marker.", scan->table->qualname));
			scan->escape = false;
		}
		else if (c == '\\')
			scan->escape = true;
		else if (c == '\r')
			SyncBadArchive(scan->machine_id, "archive",
						   psprintf("The data of %s holds a carriage return.", scan->table->qualname));
		else if (c == '\n')
		{
			EndOfRow(scan);
			scan->field = 0;
			scan->linepos = 0;
			scan->keylen = 0;
			scan->keylong = false;
			continue;
		}
		else if (c == '\t')
		{
			scan->field++;
			scan->linepos++;
			continue;
		}
		/* part of a field: the key's bytes are kept, escapes included */
		if (in_key)
		{
			if (scan->keylen < (int) sizeof(scan->key) - 1)
				scan->key[scan->keylen++] = c;
			else
				scan->keylong = true;
		}
		scan->linepos++;
	}
}

/* Did the data scanned so far end inside a row? */
bool
SyncKeyScanInRow(const SyncKeyScan *scan)
{
	return scan->field != 0 || scan->linepos != 0 || scan->escape;
}
