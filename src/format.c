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
 * Everything is UTF-8, whatever the publisher's database encoding: rows
 * are COPY text in the output formats helpers.c pins (SyncPinSettings).
 * doc/dump.md describes every field.
 *
 * The writers (for sync_dump) and the readers (for sync_pull) of each file
 * stand side by side here, so that a change to the format is one diff.  The
 * readers trust nothing: they check what parse.c parsed, and a document
 * that is not what this version writes is an ERROR naming the machine it
 * came from.
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
					 ", \"bytes\": " INT64_FORMAT ", \"sha256\": \"%s\"}",
					 t->rows, t->excluded, t->bytes, t->sha256);
}

/*
 * The header (without results) or the manifest (with them): what the
 * archive holds, where from, and every table's files, counts, size and
 * checksum.  In UTF-8, like everything published.
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
	return pg_server_to_any(buf.data, buf.len, PG_UTF8);
}

/*
 * The index, which names the newest archive (in UTF-8).
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
	return pg_server_to_any(buf.data, buf.len, PG_UTF8);
}

/*
 * Report an archive, or a document of it (what), that is not what this
 * version writes.
 */
void
SyncBadArchive(int64 machine_id, const char *what, const char *detail)
{
	if (strcmp(what, "archive") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("archive of machine " INT64_FORMAT " is not valid", machine_id),
				 errdetail("%s", detail)));
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("%s of the archive of machine " INT64_FORMAT " is not valid",
					what, machine_id),
			 errdetail("%s", detail)));
}

/*
 * A document (index, header or manifest) of *len bytes from machine_id, as
 * text of this database: it must be valid UTF-8 (without NUL bytes), and
 * is converted; *len becomes the converted length.
 */
static char *
DocumentText(const char *raw, size_t *len, int64 machine_id, const char *what)
{
	char	   *text;

	if (*len > PG_INT32_MAX / 4 || !pg_verify_mbstr(PG_UTF8, raw, (int) *len, true))
		SyncBadArchive(machine_id, what, "It is not valid UTF-8.");
	text = pg_any_to_server(raw, (int) *len, PG_UTF8);
	*len = strlen(text);
	return text;
}

/*
 * The archive an index of len bytes names, or NULL if it is not an index
 * this version reads: a dump keeps what the previous index named, if
 * anything.
 */
char *
SyncIndexArchive(const char *text, size_t len)
{
	SyncIndex	index;

	if (!pg_verify_mbstr(PG_UTF8, text, (int) len, true) ||
		SyncParseIndex(text, len, &index) != NULL ||
		index.format != SYNC_FORMAT_VERSION)
		return NULL;
	return index.archive;
}

/*
 * Read the index (len bytes) fetched from url: it must be of this format,
 * of machine machine_id, and name an archive of that machine with its size
 * and checksum.
 */
void
SyncReadIndex(const char *text, size_t len, int64 machine_id, const char *url,
			  SyncIndex *index)
{
	char	   *doc = DocumentText(text, &len, machine_id, "index");
	const char *error = SyncParseIndex(doc, len, index);

	if (error)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("index of machine " INT64_FORMAT " is not valid", machine_id),
				 errdetail("%s Fetched from %s.", error, url)));
	if (index->format != SYNC_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index of machine " INT64_FORMAT " has format " INT64_FORMAT ", which this version does not read",
						machine_id, index->format),
				 errhint("This version of sync reads format %d; upgrade the extension here or there.",
						 SYNC_FORMAT_VERSION)));
	if (index->machine_id != machine_id)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("%s is the index of machine " INT64_FORMAT ", not of machine " INT64_FORMAT,
						url, index->machine_id, machine_id),
				 errhint("Check the sync_url of machine " INT64_FORMAT ".", machine_id)));
	if (index->archive == NULL || !SyncIsArchiveFileOf(index->archive, machine_id) ||
		index->sha256 == NULL || strlen(index->sha256) != SYNC_SHA256_HEX_LEN - 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("index of machine " INT64_FORMAT " is not valid", machine_id),
				 errdetail("It must name an archive sync-" INT64_FORMAT "-*.tar.zst with its size and SHA-256.",
						   machine_id)));
}

/*
 * Read header.json (len bytes) of an archive fetched from machine_id,
 * which owns range here: format, source machine and range, encoding, and
 * the tables with their columns.  Allocates the tables.
 */
void
SyncReadHeader(const char *text, size_t len, int64 machine_id,
			   const SyncRange *range, SyncArchiveHeader *h)
{
	char	   *doc = DocumentText(text, &len, machine_id, "header");
	const char *error = SyncParseHeader(doc, len, h);
	int			i;

	/* a document of another format need not have this one's shape */
	if (h->format != -1 && h->format != SYNC_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("archive of machine " INT64_FORMAT " has format " INT64_FORMAT ", which this version does not read",
						machine_id, h->format)));
	if (error)
		SyncBadArchive(machine_id, "header", error);
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
	/* one encoding, so that COPY alone decides what every byte means */
	if (strcmp(h->encoding, "UTF8") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("archive of machine " INT64_FORMAT " is in encoding %s, not UTF8",
						machine_id, SyncPrintable(h->encoding, strlen(h->encoding))),
				 errdetail("Archives are read as UTF-8 only; a publisher of this version writes UTF-8 whatever its database's encoding."),
				 errhint("Upgrade sync on machine " INT64_FORMAT " and dump again.", machine_id)));
	for (i = 0; i < h->ntables; i++)
		h->tables[i]->qualname = quote_qualified_identifier(h->tables[i]->schema,
															h->tables[i]->name);
	h->registry->qualname = quote_qualified_identifier(h->registry->schema,
													   h->registry->name);
}

/*
 * Read manifest.json (len bytes): every table's row count, size and
 * checksum, into the tables of the header read before.
 */
void
SyncReadManifest(const char *text, size_t len, SyncArchiveHeader *h)
{
	char	   *doc = DocumentText(text, &len, h->machine_id, "manifest");
	const char *error = SyncParseManifest(doc, len, h);

	if (error)
		SyncBadArchive(h->machine_id, "manifest", error);
}
