/*-------------------------------------------------------------------------
 *
 * tables.h
 *		The registered tables (sync_table).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SYNC_TABLES_H
#define SYNC_TABLES_H

#include "postgres.h"

#include "storage/lockdefs.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

/* A table's registration, as a dump reads it. */
typedef struct SyncRegisteredTable
{
	Oid			relid;
	char	   *level_column;	/* or NULL */
	char	   *filter;			/* or NULL */
	Jsonb	   *anonymize;		/* or NULL */
} SyncRegisteredTable;

extern AttrNumber SyncKeyColumn(Relation rel);
extern int	SyncRegisteredTables(LOCKMODE lockmode, Oid **relids, char ***keys);
extern SyncRegisteredTable *SyncTableRegistrations(int *ntables);
extern bool SyncTableIsRegistered(Oid relid);

#endif							/* SYNC_TABLES_H */
