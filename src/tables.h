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

#include "nodes/pg_list.h"
#include "storage/lockdefs.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

/* A table's registration. */
typedef struct SyncRegisteredTable
{
	Oid			relid;
	char	   *key_column;		/* as registered (followed for a primary key) */
	bool		key_declared;	/* named at registration: no primary key */
	char	   *level_column;	/* or NULL */
	char	   *filter;			/* or NULL */
	Jsonb	   *anonymize;		/* or NULL */
	Oid		   *depends_on;		/* tables its rows need beyond foreign keys */
	int			ndepends;
	bool		skip_conflicts; /* on_conflict = 'skip' */
} SyncRegisteredTable;

extern SyncRegisteredTable *SyncTableRegistrations(int *ntables);
extern bool SyncLookupRegistration(Oid relid, SyncRegisteredTable *reg);
extern AttrNumber SyncRegisteredKey(Relation rel, const SyncRegisteredTable *reg);
extern int	SyncRegisteredTables(LOCKMODE lockmode, Oid **relids, char ***keys);
extern List *SyncDeclaredDependencies(const SyncRegisteredTable *regs, int nregs,
									  const Oid *relids, int n);
extern List *SyncTableDependencies(const Oid *relids, int n);

#endif							/* SYNC_TABLES_H */
