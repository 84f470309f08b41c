/*-------------------------------------------------------------------------
 *
 * fuzz_archive.c
 *		Fuzz target: an archive's bytes as a pull downloads them, through
 *		everything that reads them before COPY does: zstd frames and tar
 *		headers (src/unpack.c), the header and manifest (src/parse.c) and
 *		the framing of each member's COPY rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "mb/pg_wchar.h"

#include "../src/parse.h"
#include "../src/unpack.h"
#include "fuzz.h"

/* most an input may unpack to (a real pull's cap is sync.max_unpacked_size) */
#define FUZZ_UNPACK_LIMIT (64 * 1024 * 1024)

/* The input, read as the download it stands for. */
typedef struct Input
{
	const uint8_t *data;
	size_t		size;
	size_t		pos;
} Input;

static ssize_t
ReadInput(void *arg, char *buf, size_t len)
{
	Input	   *in = (Input *) arg;
	size_t		n = Min(len, in->size - in->pos);

	memcpy(buf, in->data + in->pos, n);
	in->pos += n;
	return (ssize_t) n;
}

/* Read a whole small member, as SyncArchiveReadAll does; NULL if it fails. */
static char *
ReadAll(SyncUnpack *u, uint64 size, uint64 limit)
{
	char	   *text;
	size_t		done = 0;

	if (size > limit)
		return NULL;
	text = palloc(size + 1);
	while (done < size)
	{
		size_t		n;

		if (SyncUnpackRead(u, text + done, size - done, &n) != SYNC_UNPACK_OK || n == 0)
			return NULL;
		done += n;
	}
	text[size] = '\0';
	return text;
}

/* A document must be UTF-8 before it is parsed (format.c). */
static bool
Utf8(const char *text, uint64 size)
{
	return pg_encoding_verifymbstr(PG_UTF8, text, (int) size) == (int) size;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Input		in = {data, size, 0};
	SyncUnpack	u;
	SyncArchiveHeader header;
	bool		have_header = false;
	char		name[SYNC_TAR_BLOCK];
	uint64		member_size;
	char	   *buf = palloc(65536);

	if (SyncUnpackInit(&u, ReadInput, &in, FUZZ_UNPACK_LIMIT))
	{
		while (SyncUnpackNext(&u, name, &member_size) == SYNC_UNPACK_OK)
		{
			if (strcmp(name, "header.json") == 0 || strcmp(name, "manifest.json") == 0)
			{
				char	   *text = ReadAll(&u, member_size, name[0] == 'h' ? SYNC_MAX_HEADER : SYNC_MAX_MANIFEST);

				if (text == NULL || !Utf8(text, member_size))
					break;
				if (name[0] == 'h')
					have_header = SyncParseHeader(text, member_size, &header) == NULL;
				else if (have_header)
					(void) SyncParseManifest(text, member_size, &header);
			}
			else
			{
				SyncRowScan scan;
				size_t		n;
				const char *error = NULL;

				memset(&scan, 0, sizeof(scan));
				while (error == NULL &&
					   SyncUnpackRead(&u, buf, 65536, &n) == SYNC_UNPACK_OK && n > 0)
					error = SyncRowScanData(&scan, buf, n);
				if (error == NULL)
					(void) SyncRowScanEnd(&scan);
			}
		}
	}
	SyncUnpackFree(&u);
	FuzzArenaReset();
	return 0;
}
