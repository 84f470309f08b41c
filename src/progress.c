/*-------------------------------------------------------------------------
 *
 * progress.c
 *		Showing what a pull is doing.
 *
 * A pull under way shows itself in pg_stat_activity.query as
 *
 *	  sync_pull machine=N phase=P bytes=B bytes_total=BT rows=R rows_total=RT table=T
 *
 * which the sync_progress view takes apart: so any role that may see the
 * backend's activity sees the pull's progress, and nothing needs shared
 * memory of its own.  bytes counts what was downloaded of bytes_total (the
 * files the index names for this pull); rows counts the rows of the
 * archives handled so far in the current phase, of rows_total (the rows
 * and deleted keys their manifests give, known once an archive is
 * verified).  A phase change and a phase's first rows show at once; other
 * counts at most every PROGRESS_INTERVAL_MS, and at least that often while
 * they move.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

#include "progress.h"

/* how often moving counts are shown */
#define PROGRESS_INTERVAL_MS 200

/* The pull under way in this backend. */
static struct
{
	int64		machine_id;
	const char *phase;
	char		table[2 * NAMEDATALEN + 8];
	int64		bytes;
	int64		bytes_done;		/* of the downloads finished */
	int64		bytes_total;	/* -1: not known */
	int64		rows;
	int64		rows_total;		/* -1: not known */
	TimestampTz shown;
}			progress;

/* Show the progress now. */
static void
Show(void)
{
	char		total[2][32];
	char		text[256 + sizeof(progress.table)];

	/* no palloc: this runs inside libcurl's callbacks too */
	snprintf(total[0], sizeof(total[0]), INT64_FORMAT, progress.bytes_total);
	snprintf(total[1], sizeof(total[1]), INT64_FORMAT, progress.rows_total);
	snprintf(text, sizeof(text),
			 "sync_pull machine=" INT64_FORMAT " phase=%s bytes=" INT64_FORMAT
			 " bytes_total=%s rows=" INT64_FORMAT " rows_total=%s table=%s",
			 progress.machine_id, progress.phase, progress.bytes,
			 progress.bytes_total < 0 ? "-" : total[0], progress.rows,
			 progress.rows_total < 0 ? "-" : total[1],
			 progress.table[0] ? progress.table : "-");
	pgstat_report_activity(STATE_RUNNING, text);
	progress.shown = GetCurrentTimestamp();
}

/* Show the progress if it was last shown long enough ago. */
static void
ShowSoon(void)
{
	if (TimestampDifferenceExceeds(progress.shown, GetCurrentTimestamp(), PROGRESS_INTERVAL_MS))
		Show();
}

/* A pull of machine_id starts: nothing counted, no total known. */
void
SyncProgressBegin(int64 machine_id)
{
	memset(&progress, 0, sizeof(progress));
	progress.machine_id = machine_id;
	progress.bytes_total = progress.rows_total = -1;
	progress.phase = "checking";
	Show();
}

/*
 * The pull enters phase, on table (NULL: none); a new phase counts its
 * rows from 0.
 */
void
SyncProgressPhase(const char *phase, const char *table)
{
	if (progress.phase == NULL || strcmp(progress.phase, phase) != 0)
		progress.rows = 0;
	progress.phase = phase;
	strlcpy(progress.table, table ? table : "", sizeof(progress.table));
	Show();
}

/* The files this pull downloads add up to total bytes. */
void
SyncProgressBytesTotal(int64 total)
{
	progress.bytes_total = total;
	Show();
}

/* now bytes of the file being downloaded have arrived (done: all of it) */
void
SyncProgressDownloaded(int64 now, bool done)
{
	progress.bytes = progress.bytes_done + now;
	if (done)
		progress.bytes_done = progress.bytes;
	ShowSoon();
}

/* The archives verified so far hold total rows and deleted keys. */
void
SyncProgressRowsTotal(int64 total)
{
	progress.rows_total = total;
	Show();
}

/*
 * n more rows were handled in the current phase (the first ones are shown
 * at once: a phase's rows may all be read before the work on them starts).
 */
void
SyncProgressRows(int64 n)
{
	bool		first = (progress.rows == 0);

	if (n == 0)
		return;
	progress.rows += n;
	if (first)
		Show();
	else
		ShowSoon();
}

/* The pull is over: show the statement that ran it again. */
void
SyncReportDone(void)
{
	pgstat_report_activity(STATE_RUNNING, debug_query_string);
}
