/*-------------------------------------------------------------------------
 *
 * digest.c
 *		Digests of this server's copy of another machine's rows.
 *
 * A subscriber proves that a delta leaves its copy equal to the
 * publisher's rows by digests (format.c): it renders the rows a delta
 * replaces or deletes as the publisher renders rows, in the same output
 * formats, and takes their hashes off the digest of its copy, which the
 * hashes of the delta's rows then complete.  Only the rows the delta
 * touches are read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "tcop/dest.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "digest.h"
#include "format.h"
#include "helpers.h"

/* Receives rows and adds the hashes of their COPY text. */
typedef struct DigestReceiver
{
	DestReceiver pub;
	FmgrInfo   *out;
	MemoryContext rowcxt;
	StringInfoData row;
	uint64		sum;
	int64		rows;
} DigestReceiver;

/* DestReceiver startup: the output function of every column. */
static void
DigestStartup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	((DigestReceiver *) self)->out = SyncOutputFunctions(typeinfo);
}

/* DestReceiver: one row, rendered and hashed. */
static bool
DigestReceive(TupleTableSlot *slot, DestReceiver *self)
{
	DigestReceiver *r = (DigestReceiver *) self;
	MemoryContext oldcxt = MemoryContextSwitchTo(r->rowcxt);

	slot_getallattrs(slot);
	resetStringInfo(&r->row);
	SyncAppendCopyRow(&r->row, slot, 0, r->out);
	r->sum += SyncRowHash(r->row.data, r->row.len);
	r->rows++;
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(r->rowcxt);
	return true;
}

static void
DigestShutdown(DestReceiver *self)
{
}

static void
DigestDestroy(DestReceiver *self)
{
}

/*
 * Run sql, which selects rows as an archive's table has them (its columns,
 * in its order), and give the sum of their rows' hashes and their count.
 * Values are rendered in the formats a dump writes (SyncPinSettings).  The
 * caller is connected to SPI.
 */
void
SyncDigestQuery(const char *sql, uint64 *sum, int64 *rows)
{
	DigestReceiver r;
	SPIExecuteOptions options;
	SPIPlanPtr	plan;
	int			save_nestlevel = SyncPinSettings(true);
	int			rc;

	memset(&r, 0, sizeof(r));
	r.pub.receiveSlot = DigestReceive;
	r.pub.rStartup = DigestStartup;
	r.pub.rShutdown = DigestShutdown;
	r.pub.rDestroy = DigestDestroy;
	r.pub.mydest = DestNone;
	r.rowcxt = AllocSetContextCreate(CurrentMemoryContext, "sync digest row",
									 ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&r.row);

	plan = SPI_prepare(sql, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s: %s", SPI_result_code_string(SPI_result), sql);
	memset(&options, 0, sizeof(options));
	options.read_only = false;
	options.dest = &r.pub;
	rc = SPI_execute_plan_extended(plan, &options);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan_extended failed: %s: %s", SPI_result_code_string(rc), sql);
	SPI_freeplan(plan);
	MemoryContextDelete(r.rowcxt);
	AtEOXact_GUC(true, save_nestlevel);
	*sum = r.sum;
	*rows = r.rows;
}
