/*-------------------------------------------------------------------------
 *
 * load.c
 *		Loading the tables of an archive into relations with COPY.
 *
 * The rows of an archive are read by PostgreSQL's own COPY, from the
 * archive's members as they stream out of the reader, without a copy on
 * disk: the same parser that a DBA's COPY would use reads every value, in
 * the publisher's encoding.  A table's files follow each other in the
 * archive; COPY reads them as one stream and stops at the first member of
 * another table, which is left for the caller.  The rows COPY loaded must
 * be as many as the archive was checked to hold.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "commands/copy.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "format.h"
#include "load.h"
#include "progress.h"

/* how often the progress of a long COPY is shown */
#define PROGRESS_BYTES (8 * 1024 * 1024)

/*
 * The loader COPY reads from.  COPY's data source callback has no
 * argument, hence a file-level variable, set only while a COPY runs.
 */
static SyncLoader *current_loader = NULL;

/*
 * Open the archive at path, of machine_id, whose COPY text is in encoding,
 * and skip its header (read when the archive was verified).
 */
void
SyncLoaderOpen(SyncLoader *loader, const char *path, int64 machine_id,
			   const char *encoding)
{
	char	   *name;
	uint64		size;

	memset(loader, 0, sizeof(*loader));
	loader->machine_id = machine_id;
	loader->encoding = encoding;
	loader->cxt = CurrentMemoryContext;
	loader->reader = SyncArchiveOpen(path);
	if (!SyncArchiveNext(loader->reader, &name, &size))
		elog(ERROR, "archive lost its header");
}

/*
 * Go to the next member: the one a COPY stopped at, or the reader's next.
 * False at the end of the archive.
 */
bool
SyncLoaderNext(SyncLoader *loader, char **name)
{
	uint64		size;

	if (loader->pending)
	{
		loader->pending = false;
		*name = loader->pending_name;
		return true;
	}
	return SyncArchiveNext(loader->reader, name, &size);
}

/*
 * COPY's data source: the current table's files, one after the other.
 * Stops (returns 0) at the first member of another table, which is left
 * pending.
 */
static int
LoaderRead(void *outbuf, int minread, int maxread)
{
	SyncLoader *loader = current_loader;
	int			done = 0;

	/* COPY may ask again after the end: the next table's data is not its */
	if (loader->pending)
		return 0;
	while (done < minread)
	{
		size_t		n = SyncArchiveRead(loader->reader, (char *) outbuf + done,
										maxread - done);
		char	   *name;
		uint64		size;
		MemoryContext oldcxt;
		bool		more;

		if (n > 0)
		{
			done += n;
			continue;
		}
		/* COPY's memory is gone when it ends; the name must outlive it */
		oldcxt = MemoryContextSwitchTo(loader->cxt);
		more = SyncArchiveNext(loader->reader, &name, &size);
		MemoryContextSwitchTo(oldcxt);
		if (!more)
			break;
		if (!SyncMemberOf(name, loader->dir))
		{
			loader->pending = true;
			loader->pending_name = name;
			break;
		}
	}
	loader->bytes += done;
	if (loader->bytes - loader->reported >= PROGRESS_BYTES)
	{
		loader->reported = loader->bytes;
		SyncReportProgress(loader->machine_id, "loading", loader->qualname,
						   (int64) loader->bytes, 0);
	}
	return done;
}

/*
 * COPY the rows of the table whose files are in dir (the loader is on its
 * first file) into relid, whose columns are named as in the archive.  The
 * archive was checked to hold expected_rows of them; returns the rows
 * loaded.
 */
uint64
SyncLoad(SyncLoader *loader, const char *dir, const char *qualname,
		 Oid relid, List *columns, int64 expected_rows)
{
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;
	List	   *options;
	uint64		rows;
	SyncLoader *saved;

	loader->dir = dir;
	loader->qualname = qualname;
	loader->bytes = loader->reported = 0;

	CommandCounterIncrement();
	rel = table_open(relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	/* CopyFrom finds its target as the first range table entry */
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
										 NULL, false, false);
	options = list_make1(makeDefElem("encoding",
									 (Node *) makeString((char *) loader->encoding), -1));
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	saved = current_loader;
	current_loader = loader;
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, LoaderRead,
							   columns, options);
		rows = CopyFrom(cstate);
		EndCopyFrom(cstate);
	}
	PG_FINALLY();
	{
		current_loader = saved;
	}
	PG_END_TRY();
	PopActiveSnapshot();
	free_parsestate(pstate);
	table_close(rel, NoLock);
	CommandCounterIncrement();

	/* the rows loaded must be the rows checked */
	if ((int64) rows != expected_rows)
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_DATA_CHANGE_VIOLATION),
				 errmsg("pull of machine " INT64_FORMAT " planned to load " INT64_FORMAT " rows of table %s, but " UINT64_FORMAT " were",
						loader->machine_id, expected_rows, qualname, rows),
				 errdetail("A trigger or rule changed what COPY did; nothing was applied."),
				 errhint("Sync does not disable triggers: a BEFORE trigger that returns NULL for another machine's rows keeps its copy from matching what its owner published. Let such rows through, for example when their key is outside this machine's range.")));
	return rows;
}

/* Close the archive (after an error, its abort does). */
void
SyncLoaderClose(SyncLoader *loader)
{
	SyncArchiveClose(loader->reader);
	loader->reader = NULL;
}
