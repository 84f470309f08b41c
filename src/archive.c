/*-------------------------------------------------------------------------
 *
 * archive.c
 *		The container of a dump: a POSIX (ustar) tar stream compressed with
 *		zstd, which a DBA can open with `tar --zstd -xf` or
 *		`zstd -dc | tar -x`; written by dumps, read back by pulls.  What the
 *		members hold is format.c's concern.
 *
 * An archive is written under a temporary name, fsynced and renamed into
 * place, so a reader never sees half of one.  The SHA-256 of the
 * compressed bytes is computed while they are written.
 *
 * Reading streams the same format back, one member at a time, checking
 * zstd's frame checksum and every tar header's checksum; a truncated or
 * corrupted archive is an ERROR, never a short read.
 *
 * Files are opened with OpenTransientFile, so an error closes them when
 * the (sub)transaction aborts; the zstd contexts are freed when the memory
 * context they were created in goes away.  What an error leaves to the
 * caller is only the name of an unfinished archive: SyncArchiveAbort
 * removes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "archive.h"
#include "unpack.h"

#define TAR_BLOCK SYNC_TAR_BLOCK

struct SyncArchive
{
	char	   *tmppath;		/* where the archive is being written */
	int			fd;				/* -1 once closed */
	bool		tmp_exists;		/* tmppath still to be renamed or removed */
	ZSTD_CCtx  *zstd;
	MemoryContextCallback free_zstd;	/* frees zstd with the struct */
	pg_cryptohash_ctx *sha;		/* over the compressed bytes */
	char	   *outbuf;			/* compressed bytes waiting to be written */
	size_t		outsize;
	uint64		written;		/* compressed bytes written so far */
	pg_time_t	mtime;			/* member modification time */
};

/* Memory context callback: free a writer's zstd context. */
static void
FreeCompressor(void *arg)
{
	SyncArchive *archive = (SyncArchive *) arg;

	if (archive->zstd)
		ZSTD_freeCCtx(archive->zstd);
	archive->zstd = NULL;
}

/*
 * Format a SHA-256 digest as lowercase hex.
 */
static void
SyncHexDigest(const uint8 *digest, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	int			i;

	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		hex[2 * i] = digits[digest[i] >> 4];
		hex[2 * i + 1] = digits[digest[i] & 0x0f];
	}
	hex[2 * PG_SHA256_DIGEST_LENGTH] = '\0';
}

/*
 * Start a SHA-256 digest.
 */
pg_cryptohash_ctx *
SyncSha256Begin(void)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0)
	{
		if (ctx)
			pg_cryptohash_free(ctx);
		elog(ERROR, "could not initialize SHA-256 digest");
	}
	return ctx;
}

/*
 * Finish a SHA-256 digest as lowercase hex, and free its context.
 */
void
SyncSha256Finish(pg_cryptohash_ctx *ctx, char *hex)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

#if PG_VERSION_NUM >= 150000
	if (pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
#else
	if (pg_cryptohash_final(ctx, digest) < 0)
#endif
		elog(ERROR, "could not finish SHA-256 digest");
	SyncHexDigest(digest, hex);
	pg_cryptohash_free(ctx);
}

/*
 * Write all of buf to the archive file, hashing it; any failure (a full
 * disk among them) is an ERROR.
 */
static void
WriteOut(SyncArchive *archive, const char *buf, size_t len)
{
	if (pg_cryptohash_update(archive->sha, (const uint8 *) buf, len) < 0)
		elog(ERROR, "could not update SHA-256 digest");
	while (len > 0)
	{
		ssize_t		n;

		errno = 0;
		n = write(archive->fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			/* a short write without errno means the disk is full */
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write dump archive \"%s\": %m",
							archive->tmppath)));
		}
		buf += n;
		len -= n;
		archive->written += n;
	}
}

/*
 * Push bytes through the compressor; with end, finish the zstd frame.
 */
static void
Compress(SyncArchive *archive, const char *data, size_t len, bool end)
{
	ZSTD_inBuffer in = {data, len, 0};
	ZSTD_EndDirective mode = end ? ZSTD_e_end : ZSTD_e_continue;

	for (;;)
	{
		ZSTD_outBuffer out = {archive->outbuf, archive->outsize, 0};
		size_t		remaining;

		CHECK_FOR_INTERRUPTS();
		remaining = ZSTD_compressStream2(archive->zstd, &out, &in, mode);
		if (ZSTD_isError(remaining))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not compress dump archive: %s",
							ZSTD_getErrorName(remaining))));
		if (out.pos > 0)
			WriteOut(archive, archive->outbuf, out.pos);
		if (end ? remaining == 0 : in.pos == in.size)
			break;
	}
}

/*
 * Start a new archive at tmppath (which must not exist yet), compressed
 * at the given zstd level.  On error, the caller's SyncArchiveAbort
 * removes what was created.
 */
SyncArchive *
SyncArchiveCreate(const char *tmppath, int level, int workers)
{
	SyncArchive *archive = palloc0(sizeof(SyncArchive));
	size_t		rc;

	archive->tmppath = pstrdup(tmppath);
	archive->fd = -1;
	archive->mtime = (pg_time_t) time(NULL);
	archive->outsize = ZSTD_CStreamOutSize();
	archive->outbuf = palloc(archive->outsize);

	archive->zstd = ZSTD_createCCtx();
	if (archive->zstd == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not create a zstd compression context.")));
	archive->free_zstd.func = FreeCompressor;
	archive->free_zstd.arg = archive;
	MemoryContextRegisterResetCallback(GetMemoryChunkContext(archive),
									   &archive->free_zstd);
	rc = ZSTD_CCtx_setParameter(archive->zstd, ZSTD_c_compressionLevel, level);
	if (!ZSTD_isError(rc))
		rc = ZSTD_CCtx_setParameter(archive->zstd, ZSTD_c_checksumFlag, 1);
	if (ZSTD_isError(rc))
		elog(ERROR, "could not set zstd parameters: %s", ZSTD_getErrorName(rc));

	/*
	 * Compression in a thread of zstd's own, beside the backend that renders
	 * the rows (as PostgreSQL's server-side base backups do); a library
	 * built without threads compresses in the backend, as before.
	 */
	if (workers > 0)
		(void) ZSTD_CCtx_setParameter(archive->zstd, ZSTD_c_nbWorkers, workers);
	archive->sha = SyncSha256Begin();

	archive->fd = OpenTransientFile(tmppath, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY);
	if (archive->fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create dump archive \"%s\": %m", tmppath),
				 errhint("Check that sync.dump_directory exists and that the server's operating system user may write it.")));
	archive->tmp_exists = true;

	/*
	 * The archive is published: readable by the web server, whatever the
	 * server's umask.  Who may reach it is up to the directory and the web
	 * server.
	 */
	if (fchmod(archive->fd, SYNC_PUBLISHED_FILE_MODE) != 0)
	{
		int			save_errno = errno;

		/* the caller has no archive to abort yet: the file is ours to remove */
		(void) unlink(tmppath);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not set permissions of dump archive \"%s\": %m", tmppath)));
	}
	return archive;
}

/*
 * Put an octal number into a tar header field of width w (w - 1 digits
 * and a terminating NUL).
 */
static void
TarOctal(char *field, int w, uint64 value)
{
	int			i;

	field[w - 1] = '\0';
	for (i = w - 2; i >= 0; i--)
	{
		field[i] = '0' + (value & 7);
		value >>= 3;
	}
}

/*
 * Add one regular file to the archive.  Names are at most 99 bytes (the
 * callers build them so).
 */
void
SyncArchiveAddMember(SyncArchive *archive, const char *name, const char *data,
					 size_t len)
{
	char		header[TAR_BLOCK];
	static const char zeros[TAR_BLOCK] = {0};
	unsigned int sum = 0;
	int			i;

	if (strlen(name) >= 100)
		elog(ERROR, "archive member name \"%s\" is too long", name);

	memset(header, 0, sizeof(header));
	strcpy(header, name);
	TarOctal(header + 100, 8, 0644);	/* mode */
	TarOctal(header + 108, 8, 0);	/* uid */
	TarOctal(header + 116, 8, 0);	/* gid */
	TarOctal(header + 124, 12, len);	/* size */
	TarOctal(header + 136, 12, (uint64) archive->mtime);	/* mtime */
	memset(header + 148, ' ', 8);	/* checksum, counted as spaces */
	header[156] = '0';			/* regular file */
	memcpy(header + 257, "ustar", 6);	/* magic, with its NUL */
	memcpy(header + 263, "00", 2);	/* version */
	for (i = 0; i < TAR_BLOCK; i++)
		sum += (unsigned char) header[i];
	TarOctal(header + 148, 7, sum);
	header[155] = ' ';

	Compress(archive, header, TAR_BLOCK, false);
	if (len > 0)
		Compress(archive, data, len, false);
	if (len % TAR_BLOCK != 0)
		Compress(archive, zeros, TAR_BLOCK - len % TAR_BLOCK, false);
}

/*
 * Close the tar stream and the zstd frame, make the file durable, and
 * rename it to path.  Returns the archive's size; sha256_hex receives the
 * digest of its bytes.
 */
uint64
SyncArchiveFinish(SyncArchive *archive, const char *path, char *sha256_hex)
{
	static const char zeros[2 * TAR_BLOCK] = {0};
	uint64		size;

	/* a tar stream ends with two empty blocks */
	Compress(archive, zeros, sizeof(zeros), false);
	Compress(archive, NULL, 0, true);

	SyncSha256Finish(archive->sha, sha256_hex);
	archive->sha = NULL;

	if (pg_fsync(archive->fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync dump archive \"%s\": %m",
						archive->tmppath)));
	if (CloseTransientFile(archive->fd) != 0)
	{
		archive->fd = -1;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close dump archive \"%s\": %m",
						archive->tmppath)));
	}
	archive->fd = -1;
	durable_rename(archive->tmppath, path, ERROR);
	archive->tmp_exists = false;

	size = archive->written;
	FreeCompressor(archive);
	return size;
}

/*
 * Remove the file of an unfinished archive, after an error (before the
 * transaction's abort closes its descriptor, which is left to it).  Safe
 * to call on a finished archive, or none: then it does nothing.  Never
 * throws.
 */
void
SyncArchiveAbort(SyncArchive *archive)
{
	if (archive == NULL || !archive->tmp_exists)
		return;
	archive->tmp_exists = false;
	if (unlink(archive->tmppath) != 0 && errno != ENOENT)
		elog(WARNING, "could not remove unfinished dump archive \"%s\": %m",
			 archive->tmppath);
}

/*
 * Give up an archive being written without an error (a dump that found
 * nothing new): close and remove its file, free what it holds.
 */
void
SyncArchiveDiscard(SyncArchive *archive)
{
	if (archive == NULL)
		return;
	if (archive->sha != NULL)
		pg_cryptohash_free(archive->sha);
	archive->sha = NULL;
	if (archive->fd >= 0)
		(void) CloseTransientFile(archive->fd);
	archive->fd = -1;
	SyncArchiveAbort(archive);
	FreeCompressor(archive);
}

/*
 * Write a small file so that readers see either its old or its new
 * contents: write tmppath, fsync it, rename it to path, fsync the
 * directory.
 */
void
SyncWriteFileDurably(const char *tmppath, const char *path, const char *data,
					 size_t len)
{
	int			fd;

	fd = OpenTransientFile(tmppath, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath)));
	PG_TRY();
	{
		if (fchmod(fd, SYNC_PUBLISHED_FILE_MODE) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not set permissions of file \"%s\": %m", tmppath)));
		errno = 0;
		if (write(fd, data, len) != (ssize_t) len)
		{
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", tmppath)));
		}
		if (pg_fsync(fd) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not fsync file \"%s\": %m", tmppath)));
		if (CloseTransientFile(fd) != 0)
		{
			fd = -1;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not close file \"%s\": %m", tmppath)));
		}
		fd = -1;
		durable_rename(tmppath, path, ERROR);
	}
	PG_CATCH();
	{
		/* a transient file is closed at abort; the name is ours to remove */
		(void) unlink(tmppath);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Reading an archive: unpack.c's stream, from a transient file, with its
 * errors reported.
 */
struct SyncArchiveReader
{
	char	   *path;
	int			fd;				/* -1 once closed */
	SyncUnpack	unpack;
	char		name[SYNC_TAR_BLOCK];	/* of the current member */
	MemoryContextCallback free_zstd;	/* frees zstd with the struct */
};

/* Memory context callback: free a reader's zstd context. */
static void
FreeDecompressor(void *arg)
{
	SyncUnpackFree(&((SyncArchiveReader *) arg)->unpack);
}

/* unpack.c's source: the archive file. */
static ssize_t
ReadFile(void *arg, char *buf, size_t len)
{
	return read(((SyncArchiveReader *) arg)->fd, buf, len);
}

/* unpack.c's interrupt check: a long read can be cancelled. */
static void
Interrupt(void)
{
	CHECK_FOR_INTERRUPTS();
}

/* Report what unpack.c found (rc is not SYNC_UNPACK_OK or _END). */
static void
ReportUnpack(SyncArchiveReader *reader, SyncUnpackStatus rc)
{
	if (rc == SYNC_UNPACK_READ_ERROR)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read archive \"%s\": %m", reader->path)));
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("archive \"%s\" is damaged", reader->path),
			 errdetail("%s", reader->unpack.error)));
}

/*
 * Open an archive for reading, which may unpack to limit bytes at most.
 * SyncArchiveClose closes it; after an error, the transaction's abort does.
 */
SyncArchiveReader *
SyncArchiveOpen(const char *path, uint64 limit)
{
	SyncArchiveReader *reader = palloc0(sizeof(SyncArchiveReader));

	reader->fd = -1;
	reader->path = pstrdup(path);
	if (!SyncUnpackInit(&reader->unpack, ReadFile, reader, limit))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not create a zstd decompression context.")));
	reader->unpack.interrupt = Interrupt;
	reader->free_zstd.func = FreeDecompressor;
	reader->free_zstd.arg = reader;
	MemoryContextRegisterResetCallback(GetMemoryChunkContext(reader),
									   &reader->free_zstd);
	reader->fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (reader->fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open archive \"%s\": %m", path)));
	return reader;
}

/*
 * Go to the next member: skips what is left of the current one.  Returns
 * false at the end of the archive; otherwise its name (allocated in the
 * current memory context) and size.
 */
bool
SyncArchiveNext(SyncArchiveReader *reader, char **name, uint64 *size)
{
	SyncUnpackStatus rc = SyncUnpackNext(&reader->unpack, reader->name, size);

	if (rc == SYNC_UNPACK_END)
		return false;
	if (rc != SYNC_UNPACK_OK)
		ReportUnpack(reader, rc);
	*name = pstrdup(reader->name);
	return true;
}

/*
 * Read up to len bytes of the current member's data; 0 at its end.
 */
size_t
SyncArchiveRead(SyncArchiveReader *reader, char *buf, size_t len)
{
	size_t		n;
	SyncUnpackStatus rc = SyncUnpackRead(&reader->unpack, buf, len, &n);

	if (rc != SYNC_UNPACK_OK)
		ReportUnpack(reader, rc);
	return n;
}

/* Decompressed bytes read so far. */
uint64
SyncArchiveUnpacked(SyncArchiveReader *reader)
{
	return reader->unpack.unpacked;
}

/*
 * Read the whole of the current member (of size bytes, at most limit, a
 * small one: what names it for messages) into memory, NUL-terminated.
 */
char *
SyncArchiveReadAll(SyncArchiveReader *reader, uint64 size, uint64 limit,
				   const char *what)
{
	char	   *data;
	uint64		done = 0;

	if (size > limit)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s of the archive is too large (" UINT64_FORMAT " bytes, at most " UINT64_FORMAT ")",
						what, size, limit)));
	data = palloc(size + 1);
	while (done < size)
	{
		size_t		n = SyncArchiveRead(reader, data + done, size - done);

		if (n == 0)
			break;
		done += n;
	}
	if (done != size)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s of the archive is truncated", what)));
	data[size] = '\0';
	return data;
}

/*
 * Close a reader and free what it holds.  Safe to call twice.
 */
void
SyncArchiveClose(SyncArchiveReader *reader)
{
	if (reader == NULL)
		return;
	if (reader->fd >= 0)
	{
		if (CloseTransientFile(reader->fd) != 0)
			elog(WARNING, "could not close archive \"%s\": %m", reader->path);
		reader->fd = -1;
	}
	SyncUnpackFree(&reader->unpack);
}
