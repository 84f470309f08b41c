/*-------------------------------------------------------------------------
 *
 * unpack.h
 *		Reading an archive's tar stream out of its zstd frames, member by
 *		member: the part of reading an archive that needs no backend (so
 *		the fuzz targets run it too).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_UNPACK_H
#define SYNC_UNPACK_H

#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include <zstd.h>

#define SYNC_TAR_BLOCK 512

/*
 * The largest zstd window (log2) a reader accepts: 8 MB, what zstd's levels
 * up to 19 use (sync writes level 1, a 512 kB window), so a frame cannot make
 * a reader allocate more.
 */
#define SYNC_ZSTD_WINDOW_LOG_MAX 23

/*
 * Where compressed bytes come from: fills buf with up to len bytes and
 * returns how many, 0 at the end, -1 on a read error (errno set).
 */
typedef ssize_t (*SyncUnpackSource) (void *arg, char *buf, size_t len);

typedef enum SyncUnpackStatus
{
	SYNC_UNPACK_OK,
	SYNC_UNPACK_END,			/* no more members */
	SYNC_UNPACK_DAMAGED,		/* error says how */
	SYNC_UNPACK_READ_ERROR		/* errno says why */
} SyncUnpackStatus;

typedef struct SyncUnpack
{
	SyncUnpackSource source;
	void	   *arg;
	void		(*interrupt) (void);	/* called as the stream advances */
	ZSTD_DCtx  *zstd;
	char	   *inbuf;			/* compressed bytes read */
	size_t		insize;
	ZSTD_inBuffer in;
	bool		eof;			/* the source has no more bytes */
	bool		frame_done;		/* zstd reported the end of its frame */
	char	   *outbuf;			/* decompressed bytes not consumed yet */
	size_t		outsize;
	size_t		outpos;
	size_t		outlen;
	uint64		unpacked;		/* decompressed bytes so far */
	uint64		limit;			/* the most it may unpack to */
	uint64		member_left;	/* data bytes left in the current member */
	uint64		padding_left;	/* padding after it */
	const char *error;			/* what is damaged */
} SyncUnpack;

extern bool SyncUnpackInit(SyncUnpack *u, SyncUnpackSource source, void *arg,
						   uint64 limit);
extern void SyncUnpackFree(SyncUnpack *u);
extern SyncUnpackStatus SyncUnpackNext(SyncUnpack *u, char *name,
									   uint64 *size);
extern SyncUnpackStatus SyncUnpackRead(SyncUnpack *u, char *buf, size_t len,
									   size_t *done);

#endif							/* SYNC_UNPACK_H */
