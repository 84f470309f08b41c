/*-------------------------------------------------------------------------
 *
 * format.h
 *		Everything that defines the files sync publishes, in both
 *		directions: names, the index, the header and manifest, COPY text.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_FORMAT_H
#define SYNC_FORMAT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "archive.h"
#include "helpers.h"

/* version of the published files; a reader refuses any other */
#define SYNC_FORMAT_VERSION 1

/* the index beside the archives, and the archive's fixed members */
#define SYNC_INDEX_NAME "sync-index.json"
#define SYNC_HEADER_MEMBER "header.json"
#define SYNC_MANIFEST_MEMBER "manifest.json"
#define SYNC_REGISTRY_DIR "registry"

/* columns of the registry in an archive: name and type */
#define SYNC_REGISTRY_NCOLUMNS 6
extern const char *const sync_registry_columns[SYNC_REGISTRY_NCOLUMNS][2];

/* One column of a table in an archive. */
typedef struct SyncColumn
{
	char	   *name;
	char	   *type;			/* the publisher's type, with its modifier */
	bool		anonymized;		/* its values are an anonymize rule's */
} SyncColumn;

/*
 * A table as an archive describes it in its header and manifest: filled by
 * a dump from the catalog and its results, by a pull from the archive.
 */
typedef struct SyncArchiveTable
{
	char	   *schema;
	char	   *name;
	char	   *qualname;		/* quoted schema.table, for SQL and messages */
	char	   *key;			/* name of the key column */
	int			key_index;		/* its position among the columns */
	char	   *dir;			/* directory of its files in the archive */
	int			ncolumns;
	SyncColumn *columns;		/* in COPY order */

	/* the manifest's account of its data (-1 and "": none given) */
	List	   *files;			/* member names */
	int64		rows;
	int64		excluded;
	char		sha256[SYNC_SHA256_HEX_LEN];
} SyncArchiveTable;

/* What an archive says about itself: where from, and what it holds. */
typedef struct SyncArchiveHeader
{
	int64		machine_id;
	char	   *hostname;
	SyncRange	range;
	const char *encoding;		/* of the COPY text */
	int			level;
	bool		anonymized;
	bool		unchecked;
	TimestampTz snapshot_time;
	SyncArchiveTable *registry;
	SyncArchiveTable **tables;	/* parents first */
	int			ntables;
} SyncArchiveHeader;

/* What an index says: the newest archive of a machine. */
typedef struct SyncIndex
{
	int64		machine_id;
	char	   *archive;		/* file name, beside the index */
	uint64		size;
	char	   *sha256;
	TimestampTz created_at;
	int			level;
	bool		anonymized;
	bool		unchecked;
} SyncIndex;

/*
 * Scans the COPY text of one table as it streams by: every row's key must
 * be an integer in the publishing machine's range.
 */
typedef struct SyncKeyScan
{
	int64		machine_id;
	SyncRange	range;
	const SyncArchiveTable *table;
	bool		check_keys;		/* false: only count rows (the registry) */
	int64		rows;			/* rows seen */
	int			field;			/* field of the current line */
	int			linepos;		/* bytes of the current line seen */
	bool		escape;			/* the previous byte was an escaping backslash */
	char		key[32];		/* the key field so far */
	int			keylen;
	bool		keylong;
} SyncKeyScan;

/* names */
extern char *SyncFormatTime(TimestampTz ts, bool compact);
extern char *SyncArchiveFileName(int64 machine_id, TimestampTz snapshot_time);
extern bool SyncIsArchiveFileOf(const char *filename, int64 machine_id);
extern char *SyncTableDirectory(int position, const char *schema,
								const char *name);
extern char *SyncChunkName(const char *dir, int n);
extern bool SyncMemberOf(const char *member, const char *dir);

/* writing */
extern void SyncAppendCopyValue(StringInfo buf, const char *value);
extern char *SyncBuildManifest(const SyncArchiveHeader *header, bool results);
extern char *SyncBuildIndex(const SyncIndex *index);

/* reading */
extern void SyncBadArchive(int64 machine_id, const char *what,
						   const char *detail) pg_attribute_noreturn();
extern char *SyncIndexArchive(const char *text);
extern void SyncReadIndex(const char *text, int64 machine_id, const char *url,
						  SyncIndex *index);
extern void SyncReadHeader(const char *text, int64 machine_id,
						   const SyncRange *range, SyncArchiveHeader *header);
extern void SyncReadManifest(const char *text, SyncArchiveHeader *header);
extern void SyncKeyScanBegin(SyncKeyScan *scan, int64 machine_id,
							 const SyncRange *range,
							 const SyncArchiveTable *table, bool check_keys);
extern void SyncKeyScanData(SyncKeyScan *scan, const char *data, size_t len);
extern bool SyncKeyScanInRow(const SyncKeyScan *scan);

#endif							/* SYNC_FORMAT_H */
