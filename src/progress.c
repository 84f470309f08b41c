/*-------------------------------------------------------------------------
 *
 * progress.c
 *		Showing what a pull is doing.
 *
 * A pull under way shows itself in pg_stat_activity.query as
 *	  sync_pull machine=N phase=P bytes=B rows=R table=T
 * which the sync_progress view takes apart: so any role that may see the
 * backend's activity sees the pull's progress, and nothing needs shared
 * memory of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgstat.h"
#include "tcop/tcopprot.h"

#include "progress.h"

/*
 * Show the pull's phase, and the bytes and rows of the current table so
 * far (table NULL: none).
 */
void
SyncReportProgress(int64 machine_id, const char *phase, const char *table,
				   int64 bytes, int64 rows)
{
	pgstat_report_activity(STATE_RUNNING,
						   psprintf("sync_pull machine=" INT64_FORMAT " phase=%s bytes=" INT64_FORMAT " rows=" INT64_FORMAT " table=%s",
									machine_id, phase, bytes, rows,
									table ? table : "-"));
}

/* The pull is over: show the statement that ran it again. */
void
SyncReportDone(void)
{
	pgstat_report_activity(STATE_RUNNING, debug_query_string);
}
