/*-------------------------------------------------------------------------
 *
 * archive.c
 *		Writing a dump archive: a POSIX (ustar) tar stream compressed with
 *		zstd, which a DBA can open with `tar --zstd -xf` or
 *		`zstd -dc | tar -x`.
 *
 * The archive is written under a temporary name, fsynced and renamed into
 * place, so a reader never sees half of one.  The SHA-256 of the
 * compressed bytes is computed while they are written.
 *
 * The file descriptor, the zstd context and the hash context live outside
 * PostgreSQL's resource tracking; the caller must call SyncArchiveFinish or
 * SyncArchiveAbort on every path (dump.c does so in PG_FINALLY).
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
#include "common/file_perm.h"
#include "common/sha2.h"
#include "miscadmin.h"
#include "storage/fd.h"

#include "archive.h"

#define TAR_BLOCK 512

struct SyncArchive
{
	char	   *tmppath;		/* where the archive is being written */
	int			fd;				/* -1 once closed */
	bool		tmp_exists;		/* tmppath still to be renamed or removed */
	ZSTD_CCtx  *zstd;
	pg_cryptohash_ctx *sha;		/* over the compressed bytes */
	char	   *outbuf;			/* compressed bytes waiting to be written */
	size_t		outsize;
	uint64		written;		/* compressed bytes written so far */
	pg_time_t	mtime;			/* member modification time */
};

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
 * at the given zstd level.
 */
SyncArchive *
SyncArchiveCreate(const char *tmppath, int level)
{
	SyncArchive *archive = palloc0(sizeof(SyncArchive));
	size_t		rc;

	archive->tmppath = pstrdup(tmppath);
	archive->fd = -1;
	archive->mtime = (pg_time_t) time(NULL);
	archive->outsize = ZSTD_CStreamOutSize();
	archive->outbuf = palloc(archive->outsize);

	archive->sha = SyncSha256Begin();
	archive->zstd = ZSTD_createCCtx();
	if (archive->zstd == NULL)
	{
		SyncArchiveAbort(archive);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not create a zstd compression context.")));
	}
	rc = ZSTD_CCtx_setParameter(archive->zstd, ZSTD_c_compressionLevel, level);
	if (!ZSTD_isError(rc))
		rc = ZSTD_CCtx_setParameter(archive->zstd, ZSTD_c_checksumFlag, 1);
	if (ZSTD_isError(rc))
	{
		SyncArchiveAbort(archive);
		elog(ERROR, "could not set zstd parameters: %s", ZSTD_getErrorName(rc));
	}

	archive->fd = open(tmppath, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY,
					   pg_file_create_mode);
	if (archive->fd < 0)
	{
		int			save_errno = errno;

		SyncArchiveAbort(archive);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create dump archive \"%s\": %m", tmppath),
				 errhint("Check that sync.dump_directory exists and that the server's operating system user may write it.")));
	}
	archive->tmp_exists = true;

	/*
	 * The archive is published: readable by the web server, whatever the
	 * server's umask.  Who may reach it is up to the directory and the web
	 * server.
	 */
	if (fchmod(archive->fd, SYNC_PUBLISHED_FILE_MODE) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not set permissions of dump archive \"%s\": %m", tmppath)));
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
	if (close(archive->fd) != 0)
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
	ZSTD_freeCCtx(archive->zstd);
	archive->zstd = NULL;
	return size;
}

/*
 * Release everything an unfinished archive holds and remove its file.
 * Safe to call on a finished archive (then it does nothing), and from
 * error cleanup: it never throws.
 */
void
SyncArchiveAbort(SyncArchive *archive)
{
	if (archive == NULL)
		return;
	if (archive->fd >= 0)
	{
		close(archive->fd);
		archive->fd = -1;
	}
	if (archive->tmp_exists)
	{
		archive->tmp_exists = false;
		if (unlink(archive->tmppath) != 0 && errno != ENOENT)
			elog(WARNING, "could not remove unfinished dump archive \"%s\": %m",
				 archive->tmppath);
	}
	if (archive->zstd)
	{
		ZSTD_freeCCtx(archive->zstd);
		archive->zstd = NULL;
	}
	if (archive->sha)
	{
		pg_cryptohash_free(archive->sha);
		archive->sha = NULL;
	}
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
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmppath)));
	durable_rename(tmppath, path, ERROR);
}
