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
#include "executor/tuptable.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "archive.h"
#include "helpers.h"

/* version of the published files; a reader refuses any other */
#define SYNC_FORMAT_VERSION 1

/*
 * What this version adds to format 1 without breaking its readers (they
 * ignore what they do not know): 2 adds deltas, chains and digests.
 */
#define SYNC_FORMAT_REVISION 2

/* the index beside the archives, and the archive's fixed members */
#define SYNC_INDEX_NAME "sync-index.json"
#define SYNC_HEADER_MEMBER "header.json"
#define SYNC_MANIFEST_MEMBER "manifest.json"
#define SYNC_REGISTRY_DIR "registry"

/* columns of the registry in an archive: name and type */
#define SYNC_REGISTRY_NCOLUMNS 6
extern const char *const sync_registry_columns[SYNC_REGISTRY_NCOLUMNS][2];

/* names */
extern char *SyncFormatTime(TimestampTz ts, bool compact);
extern bool SyncParseTime(const char *text, TimestampTz *ts);
extern void SyncCheckLevel(int level);
extern SyncIndex *SyncIndexInDirectory(const char *dir, int64 machine_id,
									   char **text, size_t *len);
extern char *SyncArchiveFileName(int64 machine_id, TimestampTz snapshot_time,
								 bool delta);
extern bool SyncIsArchiveFileOf(const char *filename, int64 machine_id);
extern char *SyncTableDirectory(int position, const char *schema,
								const char *name);
extern char *SyncDeletedDirectory(const char *dir);
extern char *SyncChunkName(const char *dir, int n);
extern bool SyncMemberOf(const char *member, const char *dir);

/* writing */
/* Digests of COPY text: rows hashed as they stream by (SyncDigestData). */
typedef struct SyncDigest
{
	uint64		sum;
	int64		rows;
	StringInfoData partial;		/* a row cut between two calls */
} SyncDigest;

extern void SyncAppendCopyValue(StringInfo buf, const char *value);
extern FmgrInfo *SyncOutputFunctions(TupleDesc desc);
extern void SyncAppendCopyRow(StringInfo buf, TupleTableSlot *slot, int first,
							  FmgrInfo *out);
extern uint64 SyncRowHash(const char *data, size_t len);
extern void SyncDigestData(SyncDigest *digest, const char *data, size_t len);
extern char *SyncBuildManifest(const SyncArchiveHeader *header, bool results);
extern char *SyncBuildIndex(const SyncIndex *index);
extern int	SyncDeltasAfter(const SyncIndex *index, int64 seq, uint64 *bytes);

/* reading */
extern void SyncBadArchive(int64 machine_id, const char *what,
						   const char *detail) pg_attribute_noreturn();
extern SyncIndex *SyncIndexOfDump(const char *text, size_t len,
								  int64 machine_id);
extern void SyncReadIndex(const char *text, size_t len, int64 machine_id,
						  const char *url, SyncIndex *index);
extern void SyncReadHeader(const char *text, size_t len, int64 machine_id,
						   const SyncRange *range, SyncArchiveHeader *header);
extern void SyncReadManifest(const char *text, size_t len,
							 SyncArchiveHeader *header);

#endif							/* SYNC_FORMAT_H */
