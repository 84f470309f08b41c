/*-------------------------------------------------------------------------
 *
 * format.c
 *		The files sync publishes, written and read in one place.
 *
 * A machine's dump directory holds its archives and an index:
 *	  sync-<machine>-<time>.tar.zst	an archive (tar + zstd, archive.c)
 *	  sync-index.json				names the newest archive, its size and
 *									SHA-256, for subscribers to poll
 * and, since revision 2, deltas beside the archives:
 *	  sync-<machine>-<time>-delta.tar.zst the changes from one state to the next
 * and an archive holds, as tar members, in this order:
 *	  header.json					what follows: source, tables, columns, keys
 *	  registry/000001.copy			the machine registry
 *	  tables/NNNN-<name>/NNNNNN.copy each table's rows, parents first
 *	  deleted/NNNN-<name>/NNNNNN.copy a delta's: the keys each table lost
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
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
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

/*
 * Refuse an access level outside 0 (private) .. 4 (public): for sync_dump,
 * and for a dump scheduled to run later.
 */
void
SyncCheckLevel(int level)
{
	if (level < 0 || level > 4)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid access level %d", level),
				 errdetail("Levels go from 0 (private) to 4 (public); a dump at level L publishes rows whose level is L or more.")));
}

/*
 * Read back a time SyncFormatTime wrote (not compact) into *ts; false for
 * anything else, which a reader then does not know.
 */
bool
SyncParseTime(const char *text, TimestampTz *ts)
{
	struct pg_tm tm;
	int			usec;
	int			n = 0;

	/* digits where the format has them, and nothing else */
	if (text == NULL || strlen(text) != 27 ||
		strspn(text, "0123456789") != 4 || strspn(text + 5, "0123456789") != 2 ||
		strspn(text + 8, "0123456789") != 2 || strspn(text + 11, "0123456789") != 2 ||
		strspn(text + 14, "0123456789") != 2 || strspn(text + 17, "0123456789") != 2 ||
		strspn(text + 20, "0123456789") != 6)
		return false;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ%n", &tm.tm_year, &tm.tm_mon,
			   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &usec, &n) != 7 ||
		n != 27 || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
		tm.tm_mday > day_tab[isleap(tm.tm_year)][tm.tm_mon - 1] || tm.tm_hour > 23 ||
		tm.tm_min > 59 || tm.tm_sec > 59 || usec < 0)
		return false;
	return tm2timestamp(&tm, usec, NULL, ts) == 0;
}

/*
 * File name of a machine's archive of a snapshot, or (delta) of the delta
 * that leads to it.
 */
char *
SyncArchiveFileName(int64 machine_id, TimestampTz snapshot_time, bool delta)
{
	return psprintf("sync-" INT64_FORMAT "-%s%s.tar.zst", machine_id,
					SyncFormatTime(snapshot_time, true), delta ? "-delta" : "");
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

/* Directory of the keys a delta deletes from the table in dir. */
char *
SyncDeletedDirectory(const char *dir)
{
	Assert(strncmp(dir, "tables/", 7) == 0);
	return psprintf("deleted/%s", dir + 7);
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

/* The output function of every column of desc, for SyncAppendCopyRow. */
FmgrInfo *
SyncOutputFunctions(TupleDesc desc)
{
	FmgrInfo   *out = palloc(sizeof(FmgrInfo) * (desc->natts + 1));
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Oid			func;
		bool		isvarlena;

		getTypeOutputInfo(TupleDescAttr(desc, i)->atttypid, &func, &isvarlena);
		fmgr_info(func, &out[i]);
	}
	return out;
}

/*
 * Append the values of slot from column first on as one row of COPY text,
 * with out the output function of every column: what a dump publishes,
 * and what a subscriber renders of its copy to compare digests.  Values
 * are converted to UTF-8 (a no-op in a UTF-8 database).
 */
void
SyncAppendCopyRow(StringInfo buf, TupleTableSlot *slot, int first, FmgrInfo *out)
{
	int			natts = slot->tts_tupleDescriptor->natts;
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	int			i;

	for (i = first; i < natts; i++)
	{
		if (i > first)
			appendStringInfoCharMacro(buf, '\t');
		if (slot->tts_isnull[i])
			appendBinaryStringInfo(buf, "\\N", 2);
		else
		{
			char	   *value = OutputFunctionCall(&out[i], slot->tts_values[i]);

			SyncAppendCopyValue(buf, utf8 ? value :
								pg_server_to_any(value, strlen(value), PG_UTF8));
		}
	}
}

/* multipliers of the row hash (odd 64-bit constants with mixed bits) */
#define ROW_HASH_M1 UINT64CONST(0x9E3779B97F4A7C15)
#define ROW_HASH_M2 UINT64CONST(0xC2B2AE3D27D4EB4F)
#define ROW_HASH_M3 UINT64CONST(0x165667B19E3779F9)

static inline uint64
RotateLeft64(uint64 x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/*
 * The hash of one row of COPY text (without its newline): 64 bits, the
 * same on every platform (bytes are read as little-endian words).  A
 * table's digest is the sum of its rows' hashes modulo 2^64, which does
 * not depend on their order and is updated row by row: a subscriber takes
 * off the hashes of the rows it replaces and adds those of the new ones.
 * It detects accidents (a copy that drifted, a delta applied to the wrong
 * state); the archive's SHA-256 is what detects tampering.
 */
uint64
SyncRowHash(const char *data, size_t len)
{
	const unsigned char *p = (const unsigned char *) data;
	uint64		h = ROW_HASH_M3 ^ ((uint64) len * ROW_HASH_M1);
	uint64		w;

	while (len >= 8)
	{
		memcpy(&w, p, 8);
#ifdef WORDS_BIGENDIAN
		w = pg_bswap64(w);
#endif
		w = RotateLeft64(w * ROW_HASH_M2, 31) * ROW_HASH_M1;
		h = RotateLeft64(h ^ w, 27) * ROW_HASH_M1 + ROW_HASH_M3;
		p += 8;
		len -= 8;
	}
	w = 0;
	while (len > 0)
		w = (w << 8) | p[--len];
	h ^= RotateLeft64(w * ROW_HASH_M2, 31) * ROW_HASH_M1;

	/* mix the last bits into all of them */
	h ^= h >> 33;
	h *= ROW_HASH_M2;
	h ^= h >> 29;
	h *= ROW_HASH_M3;
	h ^= h >> 32;
	return h;
}

/*
 * Add the hashes of the rows in len bytes of COPY text to *digest, counting
 * them in *rows; a row cut at the end of data waits in partial for the
 * next call.  (Rows end at a raw newline: COPY text escapes any other.)
 */
void
SyncDigestData(SyncDigest *d, const char *data, size_t len)
{
	const char *end = data + len;

	while (data < end)
	{
		const char *nl = memchr(data, '\n', end - data);

		if (nl == NULL)
		{
			appendBinaryStringInfo(&d->partial, data, end - data);
			return;
		}
		if (d->partial.len > 0)
		{
			appendBinaryStringInfo(&d->partial, data, nl - data);
			d->sum += SyncRowHash(d->partial.data, d->partial.len);
			resetStringInfo(&d->partial);
		}
		else
			d->sum += SyncRowHash(data, nl - data);
		d->rows++;
		data = nl + 1;
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

/* Append the files, counts, size and checksum of a table's data. */
static void
ManifestAccount(StringInfo buf, const SyncArchiveTable *t)
{
	ListCell   *lc;

	appendStringInfoString(buf, ", \"files\": [");
	foreach(lc, t->files)
	{
		if (lc != list_head(t->files))
			appendStringInfoString(buf, ", ");
		JsonString(buf, lfirst(lc));
	}
	appendStringInfo(buf, "], \"rows\": " INT64_FORMAT ", \"excluded\": " INT64_FORMAT
					 ", \"bytes\": " INT64_FORMAT ", \"sha256\": \"%s\"",
					 t->rows, t->excluded, t->bytes, t->sha256);
}

/*
 * Append the manifest entry of one table; with results, also its files,
 * counts and checksum (the header, written first, has no results yet).
 */
static void
ManifestTable(StringInfo buf, const SyncArchiveTable *t, bool results)
{
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
	if (t->deleted != NULL && !results)
	{
		appendStringInfoString(buf, ", \"deleted\": {\"dir\": ");
		JsonString(buf, t->deleted->dir);
		appendStringInfoChar(buf, '}');
	}
	if (!results)
	{
		appendStringInfoChar(buf, '}');
		return;
	}
	ManifestAccount(buf, t);
	if (t->has_digest)
		appendStringInfo(buf, ", \"digest\": \"%016" INT64_MODIFIER "x\", \"published\": " INT64_FORMAT,
						 t->digest, t->published);
	if (t->deleted != NULL)
	{
		appendStringInfoString(buf, ", \"deleted\": {\"dir\": ");
		JsonString(buf, t->deleted->dir);
		ManifestAccount(buf, t->deleted);
		appendStringInfoChar(buf, '}');
	}
	appendStringInfoChar(buf, '}');
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
	if (h->chain != NULL)
	{
		appendStringInfo(&buf, ",\n  \"revision\": %d,\n  \"kind\": \"%s\",\n  \"chain\": \"%s\",\n  \"seq\": " INT64_FORMAT,
						 SYNC_FORMAT_REVISION, h->delta ? "delta" : "full", h->chain, h->seq);
		if (h->delta)
			appendStringInfo(&buf, ",\n  \"base\": " INT64_FORMAT, h->base);
	}
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
	appendStringInfo(&buf, ", \"level\": %d, \"anonymized\": %s, \"unchecked\": %s",
					 index->level, index->anonymized ? "true" : "false",
					 index->unchecked ? "true" : "false");
	if (index->chain != NULL)
	{
		int			i;

		appendStringInfo(&buf, ",\n \"revision\": %d, \"chain\": \"%s\", \"seq\": " INT64_FORMAT
						 ", \"full_seq\": " INT64_FORMAT ", \"deltas\": [",
						 SYNC_FORMAT_REVISION, index->chain, index->seq, index->full_seq);
		for (i = 0; i < index->ndeltas; i++)
		{
			appendStringInfo(&buf, "%s\n  {\"base\": " INT64_FORMAT ", \"seq\": " INT64_FORMAT ", \"archive\": ",
							 i ? "," : "", index->deltas[i].seq - 1, index->deltas[i].seq);
			JsonString(&buf, index->deltas[i].archive);
			appendStringInfo(&buf, ", \"size\": " UINT64_FORMAT ", \"sha256\": \"%s\"}",
							 index->deltas[i].size, index->deltas[i].sha256);
		}
		appendStringInfoChar(&buf, ']');
	}
	appendStringInfoString(&buf, "}\n");
	return pg_server_to_any(buf.data, buf.len, PG_UTF8);
}

/*
 * The position in index of the first delta after state seq (ndeltas if
 * none; they follow each other), and in *bytes, if asked, the size of
 * those deltas together.
 */
int
SyncDeltasAfter(const SyncIndex *index, int64 seq, uint64 *bytes)
{
	int			first = 0;
	int			i;

	while (first < index->ndeltas && index->deltas[first].seq <= seq)
		first++;
	if (bytes)
	{
		*bytes = 0;
		for (i = first; i < index->ndeltas; i++)
			*bytes += index->deltas[i].size;
	}
	return first;
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
 * The index of len bytes that a dump finds in its directory, or NULL if it
 * is not one this version reads: a dump keeps the files the previous index
 * named, and continues its chain.
 */
SyncIndex *
SyncIndexOfDump(const char *text, size_t len, int64 machine_id)
{
	SyncIndex  *index = palloc(sizeof(SyncIndex));

	int			i;

	if (!pg_verify_mbstr(PG_UTF8, text, (int) len, true) ||
		SyncParseIndex(text, len, index) != NULL ||
		index->format != SYNC_FORMAT_VERSION || index->machine_id != machine_id ||
		index->archive == NULL || !SyncIsArchiveFileOf(index->archive, machine_id))
		return NULL;
	/* every file it names is an archive of the machine's, in the directory */
	for (i = 0; i < index->ndeltas; i++)
		if (!SyncIsArchiveFileOf(index->deltas[i].archive, machine_id))
			return NULL;
	return index;
}

/*
 * The index a dump of machine_id wrote into dir, read back, and its text
 * (len bytes); NULL if there is none, or none of this format and machine.
 */
SyncIndex *
SyncIndexInDirectory(const char *dir, int64 machine_id, char **text, size_t *len)
{
	char	   *path = psprintf("%s/%s", dir, SYNC_INDEX_NAME);
	FILE	   *f = AllocateFile(path, "r");
	char	   *buf;
	size_t		n;

	if (f == NULL)
		return NULL;
	buf = palloc(SYNC_MAX_INDEX + 1);
	n = fread(buf, 1, SYNC_MAX_INDEX, f);
	FreeFile(f);
	buf[n] = '\0';
	if (text)
		*text = buf;
	if (len)
		*len = n;
	return SyncIndexOfDump(buf, n, machine_id);
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
	int			i;
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
	for (i = 0; i < index->ndeltas; i++)
		if (!SyncIsArchiveFileOf(index->deltas[i].archive, machine_id) ||
			strlen(index->deltas[i].sha256) != SYNC_SHA256_HEX_LEN - 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("index of machine " INT64_FORMAT " is not valid", machine_id),
					 errdetail("Each delta it lists must be a file sync-" INT64_FORMAT "-*.tar.zst with its size and SHA-256.",
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
