/*-------------------------------------------------------------------------
 *
 * fuzz_documents.c
 *		Fuzz target: the JSON documents a remote machine publishes (index,
 *		header, manifest), through the parsers a pull uses (src/parse.c).
 *
 * Every input is read as each of the three documents, as a pull would
 * after checking that it is UTF-8: a header that parses is then read
 * again as the manifest of itself (the two share their tables' shape).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "mb/pg_wchar.h"

#include "../src/parse.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text;
	SyncIndex	index;
	SyncArchiveHeader header;

	if (size > SYNC_MAX_MANIFEST + 1)
		return 0;
	text = palloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	/* what format.c checks before parsing: UTF-8, without NUL bytes */
	if (pg_encoding_verifymbstr(PG_UTF8, text, (int) size) == (int) size)
	{
		(void) SyncParseIndex(text, size, &index);
		if (SyncParseHeader(text, size, &header) == NULL)
			(void) SyncParseManifest(text, size, &header);
	}
	FuzzArenaReset();
	return 0;
}
