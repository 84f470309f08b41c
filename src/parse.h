/*-------------------------------------------------------------------------
 *
 * parse.h
 *		The published files' structures, and the parsers of the bytes a
 *		remote machine sends before PostgreSQL takes over: the JSON
 *		documents (index, header, manifest) and the framing of COPY rows.
 *
 * Nothing here throws or needs a backend: a parser returns NULL or a
 * sentence saying what is wrong, for the caller to report.  So the same
 * code runs in the extension and, built with FRONTEND defined, in the fuzz
 * targets (fuzz/).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_PARSE_H
#define SYNC_PARSE_H

#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "datatype/timestamp.h"

/* hex SHA-256 plus terminator */
#define SYNC_SHA256_HEX_LEN (2 * 32 + 1)

/* the largest documents a pull reads */
#define SYNC_MAX_INDEX (64 * 1024)
#define SYNC_MAX_HEADER (1024 * 1024)
#define SYNC_MAX_MANIFEST (4 * 1024 * 1024)

/* the most deltas an index lists */
#define SYNC_MAX_DELTAS 200

/* the deepest nesting of a document (the header's is 4) */
#define SYNC_MAX_JSON_DEPTH 8

/* One machine's owned key range, inclusive at both ends. */
typedef struct SyncRange
{
	int64		start;
	int64		end;
} SyncRange;

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
	struct List *files;			/* member names (a dump's) */
	int64		rows;
	int64		excluded;
	int64		bytes;			/* of its files together */
	char		sha256[SYNC_SHA256_HEX_LEN];

	/*
	 * Revision 2: the digest of the table's published rows once this
	 * archive is applied (the sum of their row hashes, format.c) and their
	 * count; in a delta, the keys it deletes, described as a table of one
	 * column (NULL in a full archive).
	 */
	bool		has_digest;
	uint64		digest;
	int64		published;
	struct SyncArchiveTable *deleted;
} SyncArchiveTable;

/* What an archive says about itself: where from, and what it holds. */
typedef struct SyncArchiveHeader
{
	int64		format;
	int64		machine_id;
	char	   *hostname;
	SyncRange	range;
	const char *encoding;		/* of the COPY text and the documents */
	int			level;
	bool		anonymized;
	bool		unchecked;
	TimestampTz snapshot_time;
	SyncArchiveTable *registry;
	SyncArchiveTable **tables;	/* parents first */
	int			ntables;

	/*
	 * Revision 2: the chain of states the archive belongs to (NULL: none),
	 * the state it results in, and for a delta the state it applies to.
	 */
	char	   *chain;
	int64		seq;
	bool		delta;
	int64		base;
} SyncArchiveHeader;

/* A delta an index lists: the file that takes state seq - 1 to seq. */
typedef struct SyncIndexDelta
{
	int64		seq;
	char	   *archive;
	uint64		size;
	char	   *sha256;
} SyncIndexDelta;

/* What an index says: the newest archive of a machine. */
typedef struct SyncIndex
{
	int64		format;
	int64		machine_id;
	char	   *archive;		/* file name, beside the index */
	uint64		size;
	char	   *sha256;
	TimestampTz created_at;		/* written: the time of the newest state */
	char	   *created;		/* read: its text (SyncParseTime reads it) */
	int			level;
	bool		anonymized;
	bool		unchecked;

	/*
	 * Revision 2: the chain, the newest state (seq), the state the full
	 * archive holds (full_seq), and the deltas kept, oldest first, the last
	 * one resulting in seq.  A reader of revision 1 sees the full archive.
	 */
	int64		revision;
	char	   *chain;
	int64		seq;
	int64		full_seq;
	SyncIndexDelta *deltas;
	int			ndeltas;
} SyncIndex;

/*
 * The framing of a table's COPY text as it streams by: rows are counted,
 * and anything COPY would read otherwise than sync writes it (a carriage
 * return, an end-of-data marker, a NUL byte, a last row without its
 * newline) is refused.
 */
typedef struct SyncRowScan
{
	int64		rows;
	int64		bytes;
	bool		escape;			/* the previous byte was an escaping backslash */
	bool		in_row;			/* bytes seen since the last newline */
} SyncRowScan;

extern const char *SyncParseIndex(const char *text, size_t len,
								  SyncIndex *index);
extern const char *SyncParseHeader(const char *text, size_t len,
								   SyncArchiveHeader *header);
extern const char *SyncParseManifest(const char *text, size_t len,
									 SyncArchiveHeader *header);
extern bool SyncIsPlainText(const char *s);
extern char *SyncPrintable(const char *s, size_t len);
extern const char *SyncRowScanData(SyncRowScan *scan, const char *data,
								   size_t len);
extern const char *SyncRowScanEnd(const SyncRowScan *scan);

#endif							/* SYNC_PARSE_H */
