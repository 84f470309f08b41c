/*-------------------------------------------------------------------------
 *
 * progress.h
 *		Showing what a pull is doing, for the sync_progress view.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_PROGRESS_H
#define SYNC_PROGRESS_H

#include "postgres.h"

extern void SyncProgressBegin(int64 machine_id);
extern void SyncProgressPhase(const char *phase, const char *table);
extern void SyncProgressBytesTotal(int64 total);
extern void SyncProgressDownloaded(int64 now, bool done);
extern void SyncProgressRowsTotal(int64 total);
extern void SyncProgressRows(int64 n);
extern void SyncReportDone(void);

#endif							/* SYNC_PROGRESS_H */
