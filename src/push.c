/*-------------------------------------------------------------------------
 *
 * push.c
 *		sync_push: uploading what this machine published to a hub's inbox.
 *
 * A machine nobody can reach publishes through a hub: sync_push uploads
 * the files the latest dump published (the index names them) with HTTP
 * PUT to the URL sync_set_push gave, archives first and the index last,
 * so that readers of the inbox see the old index or the new one, and
 * never an index naming a file that is not there yet.  A file the target
 * already has, by name and size (HEAD), is not sent again.  Every push is
 * recorded in sync_log (kind 'push').
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "fetch.h"
#include "format.h"
#include "helpers.h"
#include "log.h"
#include "registry.h"
#include "remote.h"
#include "settings.h"

PG_FUNCTION_INFO_V1(sync_push);

/* What one call of sync_push works with. */
typedef struct PushRun
{
	SyncRemote	target;
	int			files;			/* uploaded */
	int			skipped;		/* already there */
	uint64		bytes;
	int64		machine_id;
	MemoryContext cxt;
} PushRun;

/* Upload the file name of the dump directory dir, size bytes, if need be. */
static void
PushOne(PushRun *run, const char *dir, const char *name, const char *what,
		int64 size, bool always)
{
	char	   *path = psprintf("%s/%s", dir, name);
	struct stat st;
	int			fd;

	CHECK_FOR_INTERRUPTS();
	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read \"%s\" to push: %m", path),
				 errhint("The index of sync.dump_directory names it; run sync_dump() again.")));
	if (size >= 0 && st.st_size != size)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("\"%s\" has " INT64_FORMAT " bytes, not the " INT64_FORMAT " the index gives",
						path, (int64) st.st_size, size),
				 errhint("Run sync_dump() again.")));
	if (!always && SyncPushedSize(&run->target, name, what) == (int64) st.st_size)
	{
		run->skipped++;
		return;
	}
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open \"%s\" to push: %m", path)));
	PG_TRY();
	{
		SyncPushFile(&run->target, name, what, fd, (uint64) st.st_size);
	}
	PG_FINALLY();
	{
		CloseTransientFile(fd);
	}
	PG_END_TRY();
	run->files++;
	run->bytes += (uint64) st.st_size;
}

/* The push, run as a SyncBody. */
static void
PushBody(void *arg)
{
	PushRun    *run = (PushRun *) arg;
	SyncMachine local;
	SyncIndex  *index;
	const char *dir = sync_dump_directory;
	char	   *text;
	size_t		len;
	int			save_nestlevel;
	int			i;

	save_nestlevel = SyncPinSettings(false);
	SPI_connect();
	MemoryContextSwitchTo(run->cxt);

	/* no dump replaces the files while they are read and sent */
	SyncExecute("SELECT pg_catalog.pg_advisory_xact_lock(" CppAsString2(SYNC_LOCK_DUMP) ", 1)",
				0, NULL, NULL, NULL);
	SyncRequireLocalMachine(&local);
	run->machine_id = local.id;
	if (!SyncReadPushTarget(&run->target))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no push target is set"),
				 errhint("Say where to upload with sync_set_push('https://hub.example.org/inbox/" INT64_FORMAT "/', username => '...', password => '...').",
						 local.id)));
	if (dir == NULL || dir[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sync.dump_directory is not set"),
				 errhint("sync_push uploads what sync_dump() wrote there.")));

	/* the index names what the latest dump published */
	index = SyncIndexInDirectory(dir, local.id, &text, &len);
	if (index == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("nothing to push: sync.dump_directory holds no index of this machine"),
				 errhint("Run sync_dump() first.")));

	PushOne(run, dir, index->archive, "archive", (int64) index->size, false);
	for (i = 0; i < index->ndeltas; i++)
		PushOne(run, dir, index->deltas[i].archive, "delta", (int64) index->deltas[i].size, false);
	/* last: the index, which names them */
	PushOne(run, dir, SYNC_INDEX_NAME, "index", (int64) len, true);

	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
}

/*
 * sync_push() returns (url, files, bytes, duration)
 */
Datum
sync_push(PG_FUNCTION_ARGS)
{
	PushRun    *run = palloc0(sizeof(PushRun));
	SyncLogEntry log;
	ErrorData  *edata;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false};
	Interval   *duration;

	SyncEnter(fcinfo);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "sync_push must return a row");
	run->cxt = CurrentMemoryContext;
	run->machine_id = -1;
	SyncLogInit(&log, "push");
	edata = SyncRunInSubtransaction(PushBody, NULL, run);
	log.machine_id = run->machine_id;
	log.bytes = (int64) run->bytes;
	log.message = run->target.url;
	if (edata)
		SyncLogFailure(&log, edata);
	log.finished_at = GetCurrentTimestamp();
	log.status = "ok";
	log.details = psprintf("{\"files\": %d, \"skipped\": %d}", run->files, run->skipped);
	SyncLogWrite(&log);

	duration = palloc0(sizeof(Interval));
	duration->time = log.finished_at - log.started_at;
	values[0] = CStringGetTextDatum(run->target.url);
	values[1] = Int32GetDatum(run->files);
	values[2] = Int64GetDatum((int64) run->bytes);
	values[3] = IntervalPGetDatum(duration);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
