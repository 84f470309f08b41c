/*-------------------------------------------------------------------------
 *
 * dump.h
 *		sync_dump: what other files need of it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_DUMP_H
#define SYNC_DUMP_H

#include "postgres.h"

extern void SyncCheckDumpLevel(int level);

#endif							/* SYNC_DUMP_H */
