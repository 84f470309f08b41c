/*-------------------------------------------------------------------------
 *
 * archive.h
 *		The container of a dump, a tar stream compressed with zstd: writing
 *		it, reading it back, and the checksums and durable writes around it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_ARCHIVE_H
#define SYNC_ARCHIVE_H

#include "postgres.h"

#include "common/cryptohash.h"

#include "parse.h"

/* mode of the files sync_dump publishes */
#define SYNC_PUBLISHED_FILE_MODE 0644


typedef struct SyncArchive SyncArchive;

extern SyncArchive *SyncArchiveCreate(const char *tmppath, int level,
									  int workers);
extern void SyncArchiveAddMember(SyncArchive *archive, const char *name,
								 const char *data, size_t len);
extern uint64 SyncArchiveFinish(SyncArchive *archive, const char *path,
								char *sha256_hex);
extern void SyncArchiveAbort(SyncArchive *archive);
extern void SyncArchiveDiscard(SyncArchive *archive);

/* reading */
typedef struct SyncArchiveReader SyncArchiveReader;

extern SyncArchiveReader *SyncArchiveOpen(const char *path, uint64 limit);
extern bool SyncArchiveNext(SyncArchiveReader *reader, char **name,
							uint64 *size);
extern size_t SyncArchiveRead(SyncArchiveReader *reader, char *buf,
							  size_t len);
extern uint64 SyncArchiveUnpacked(SyncArchiveReader *reader);
extern char *SyncArchiveReadAll(SyncArchiveReader *reader, uint64 size,
								uint64 limit, const char *what);
extern void SyncArchiveClose(SyncArchiveReader *reader);

extern pg_cryptohash_ctx *SyncSha256Begin(void);
extern void SyncSha256Finish(pg_cryptohash_ctx *ctx, char *hex);
extern void SyncWriteFileDurably(const char *tmppath, const char *path,
								 const char *data, size_t len);

#endif							/* SYNC_ARCHIVE_H */
