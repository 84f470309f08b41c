/*-------------------------------------------------------------------------
 *
 * unpack.c
 *		Reading an archive's tar stream out of its zstd frames, member by
 *		member.
 *
 * The stream is POSIX (ustar) tar, as archive.c writes it: 512-byte
 * headers with octal fields and a checksum, regular files only, data padded
 * to whole blocks, two zero blocks at the end.  zstd checks its frames'
 * checksums; every tar header's checksum is checked here.  A stream that
 * ends early, or unpacks to more bytes than the caller allows, is damaged:
 * never a short read.
 *
 * No backend is needed: memory comes from palloc (the frontend's in the
 * fuzz targets), zstd's context is freed by SyncUnpackFree, and errors are
 * returned, for archive.c to report.
 *
 *-------------------------------------------------------------------------
 */
#include "unpack.h"

/*
 * Set up u to read the stream source(arg) delivers, allowing it to unpack
 * to limit bytes at most.  False if zstd could not be set up (memory).
 */
bool
SyncUnpackInit(SyncUnpack *u, SyncUnpackSource source, void *arg, uint64 limit)
{
	memset(u, 0, sizeof(*u));
	u->source = source;
	u->arg = arg;
	u->limit = limit;
	u->insize = ZSTD_DStreamInSize();
	u->inbuf = palloc(u->insize);
	u->outsize = ZSTD_DStreamOutSize();
	u->outbuf = palloc(u->outsize);
	u->zstd = ZSTD_createDCtx();
	/* a frame may not ask for a larger window than sync's own level uses */
	return u->zstd != NULL &&
		!ZSTD_isError(ZSTD_DCtx_setParameter(u->zstd, ZSTD_d_windowLogMax,
											 SYNC_ZSTD_WINDOW_LOG_MAX));
}

/* Free zstd's context.  Safe to call twice. */
void
SyncUnpackFree(SyncUnpack *u)
{
	if (u->zstd)
		ZSTD_freeDCtx(u->zstd);
	u->zstd = NULL;
}

static SyncUnpackStatus
Damaged(SyncUnpack *u, const char *error)
{
	u->error = error;
	return SYNC_UNPACK_DAMAGED;
}

/*
 * Decompress more bytes into outbuf; END at the clean end of the stream.
 */
static SyncUnpackStatus
Refill(SyncUnpack *u)
{
	u->outpos = u->outlen = 0;
	while (u->outlen == 0)
	{
		ZSTD_outBuffer out = {u->outbuf, u->outsize, 0};
		size_t		rc;

		if (u->interrupt)
			u->interrupt();
		if (u->in.pos == u->in.size && !u->eof)
		{
			ssize_t		n = u->source(u->arg, u->inbuf, u->insize);

			if (n < 0)
				return SYNC_UNPACK_READ_ERROR;
			u->in.src = u->inbuf;
			u->in.size = (size_t) n;
			u->in.pos = 0;
			if (n == 0)
				u->eof = true;
		}
		if (u->in.pos == u->in.size && u->eof)
		{
			if (!u->frame_done)
				return Damaged(u, "The zstd stream ends early: the archive is truncated.");
			return SYNC_UNPACK_END;
		}
		rc = ZSTD_decompressStream(u->zstd, &out, &u->in);
		if (ZSTD_isError(rc))
			return Damaged(u, psprintf("zstd: %s.", ZSTD_getErrorName(rc)));
		u->frame_done = (rc == 0);
		u->outlen = out.pos;
		u->unpacked += out.pos;
		if (u->unpacked > u->limit)
			return Damaged(u, psprintf("It unpacks to more than " UINT64_FORMAT " bytes.", u->limit));
	}
	return SYNC_UNPACK_OK;
}

/*
 * Copy up to len decompressed bytes into buf (NULL: skip them); *done says
 * how many, fewer only at the end of the stream.
 */
static SyncUnpackStatus
ReadRaw(SyncUnpack *u, char *buf, size_t len, size_t *done)
{
	*done = 0;
	while (*done < len)
	{
		size_t		n;

		if (u->outpos == u->outlen)
		{
			SyncUnpackStatus rc = Refill(u);

			if (rc == SYNC_UNPACK_END)
				break;
			if (rc != SYNC_UNPACK_OK)
				return rc;
		}
		n = Min(len - *done, u->outlen - u->outpos);
		if (buf)
			memcpy(buf + *done, u->outbuf + u->outpos, n);
		u->outpos += n;
		*done += n;
	}
	return SYNC_UNPACK_OK;
}

/* Parse an octal tar header field. */
static bool
ParseOctal(const char *field, int width, uint64 *value)
{
	int			i = 0;

	*value = 0;
	while (i < width && field[i] == ' ')
		i++;
	for (; i < width && field[i] >= '0' && field[i] <= '7'; i++)
	{
		if (*value > (PG_UINT64_MAX >> 3))
			return false;
		*value = (*value << 3) + (field[i] - '0');
	}
	return i == width || field[i] == '\0' || field[i] == ' ';
}

/*
 * Go to the next member, skipping what is left of the current one: its
 * name (NUL-terminated, into name, of 101 bytes) and size.  END after the
 * last.
 */
SyncUnpackStatus
SyncUnpackNext(SyncUnpack *u, char *name, uint64 *size)
{
	char		header[SYNC_TAR_BLOCK];
	uint64		checksum;
	unsigned int sum = 0;
	size_t		n;
	SyncUnpackStatus rc;
	int			i;

	/* skip the rest of the current member and its padding */
	while (u->member_left + u->padding_left > 0)
	{
		uint64		skip = u->member_left + u->padding_left;

		if ((rc = ReadRaw(u, NULL, Min(skip, (uint64) 65536), &n)) != SYNC_UNPACK_OK)
			return rc;
		if (n == 0)
			return Damaged(u, "A member ends early: the archive is truncated.");
		if (n <= u->member_left)
			u->member_left -= n;
		else
		{
			u->padding_left -= n - u->member_left;
			u->member_left = 0;
		}
	}

	if ((rc = ReadRaw(u, header, SYNC_TAR_BLOCK, &n)) != SYNC_UNPACK_OK)
		return rc;
	if (n != SYNC_TAR_BLOCK)
		return Damaged(u, "The tar stream ends without its end-of-archive blocks.");
	for (i = 0; i < SYNC_TAR_BLOCK && header[i] == 0; i++)
		;
	if (i == SYNC_TAR_BLOCK)
	{
		/* end of archive: a second zero block, then nothing but zeros */
		if ((rc = ReadRaw(u, header, SYNC_TAR_BLOCK, &n)) != SYNC_UNPACK_OK)
			return rc;
		if (n != SYNC_TAR_BLOCK)
			return Damaged(u, "The tar stream ends without its end-of-archive blocks.");
		for (i = 0; i < SYNC_TAR_BLOCK; i++)
			if (header[i] != 0)
				return Damaged(u, "Something follows the end of the tar stream.");
		do
		{
			if ((rc = ReadRaw(u, header, SYNC_TAR_BLOCK, &n)) != SYNC_UNPACK_OK)
				return rc;
			for (i = 0; i < (int) n; i++)
				if (header[i] != 0)
					return Damaged(u, "Something follows the end of the tar stream.");
		} while (n > 0);
		return SYNC_UNPACK_END;
	}

	if (!ParseOctal(header + 148, 8, &checksum))
		return Damaged(u, "A tar header has an invalid checksum field.");
	for (i = 0; i < SYNC_TAR_BLOCK; i++)
		sum += (i >= 148 && i < 156) ? ' ' : (unsigned char) header[i];
	if (sum != checksum)
		return Damaged(u, "A tar header's checksum does not match.");
	if (header[156] != '0' && header[156] != '\0')
		return Damaged(u, "The archive holds something other than regular files.");
	if (!ParseOctal(header + 124, 12, size))
		return Damaged(u, "A tar header has an invalid size field.");
	if (*size > u->limit)
		return Damaged(u, "A member is larger than the archive may unpack to.");

	memcpy(name, header, 100);
	name[100] = '\0';
	u->member_left = *size;
	u->padding_left = (SYNC_TAR_BLOCK - *size % SYNC_TAR_BLOCK) % SYNC_TAR_BLOCK;
	return SYNC_UNPACK_OK;
}

/*
 * Read up to len bytes of the current member's data into buf; *done is 0
 * at its end.
 */
SyncUnpackStatus
SyncUnpackRead(SyncUnpack *u, char *buf, size_t len, size_t *done)
{
	SyncUnpackStatus rc;

	*done = 0;
	if (u->member_left == 0)
		return SYNC_UNPACK_OK;
	rc = ReadRaw(u, buf, Min((uint64) len, u->member_left), done);
	if (rc != SYNC_UNPACK_OK)
		return rc;
	if (*done == 0)
		return Damaged(u, "A member ends early: the archive is truncated.");
	u->member_left -= *done;
	return SYNC_UNPACK_OK;
}
