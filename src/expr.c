/*-------------------------------------------------------------------------
 *
 * expr.c
 *		Validating the SQL expressions of a table registration: the filter
 *		(a boolean condition over the row) and the anonymize rules (per
 *		column, an expression whose value replaces the column's in a dump).
 *
 * An expression is parsed by PostgreSQL's own parser as the single target
 * of a SELECT with no other clause, then analysed against the table alone:
 * so it can only be one expression, can name only that table's columns, and
 * cannot carry a second statement.  Subqueries, aggregates, window and
 * set-returning functions and volatile functions are refused: a dump must be
 * reproducible row by row and must not change anything.
 *
 * Only PostgreSQL's built-in functions, operators, types, casts and
 * collations may be used, and no function that reads other tables, files,
 * settings or server activity: the expressions run in every dump, whoever
 * runs it, and what an anonymize rule computes is published.  No domain
 * either, whose CHECK could call anything (an anonymize rule's value is
 * published as the column's base type; the subscriber's own domain checks
 * it on arrival).  They are parsed with search_path set to pg_catalog, so
 * no user-defined object can stand in for a built-in one.  A dump runs them
 * as the table's owner, as a security-restricted operation (dump.c), so
 * even a gap here would run nothing with the dumping role's privileges.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/ruleutils.h"

#include "expr.h"
#include "fkeys.h"
#include "helpers.h"

/* what we parse: the expression behind this prefix */
#define EXPR_PREFIX "SELECT "

/* Describes the expression being validated, for error reports. */
typedef struct ExprSource
{
	const char *what;			/* "filter" or "anonymize rule for column x" */
	const char *relname;		/* table, qualified */
	const char *text;			/* the expression as the user gave it */
} ExprSource;

/*
 * Error context: point at the position inside the expression itself (not
 * inside the statement that called us) and say which expression it was.
 */
static void
ExprErrorCallback(void *arg)
{
	ExprSource *src = (ExprSource *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		if (pos > (int) strlen(EXPR_PREFIX))
			internalerrposition(pos - (int) strlen(EXPR_PREFIX));
		internalerrquery(src->text);
	}
	errcontext("%s of table %s", src->what, src->relname);
}

/*
 * Reject anything in the raw parse tree other than one bare expression.
 */
static Node *
SingleExpression(List *stmts, const ExprSource *src)
{
	RawStmt    *raw;
	SelectStmt *select;
	ResTarget  *target;

	if (list_length(stmts) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s of table %s must be a single expression",
						src->what, src->relname),
				 errdetail("It contains %d statements.", list_length(stmts))));
	raw = linitial_node(RawStmt, stmts);
	select = (SelectStmt *) raw->stmt;
	if (IsA(select, SelectStmt) && select->targetList == NIL &&
		select->fromClause == NIL && select->op == SETOP_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s of table %s is empty", src->what, src->relname),
				 errhint("Give NULL for none.")));
	if (!IsA(select, SelectStmt) ||
		select->op != SETOP_NONE ||
		select->distinctClause || select->intoClause ||
		select->fromClause || select->whereClause ||
		select->groupClause || select->havingClause ||
		select->windowClause || select->valuesLists ||
		select->sortClause || select->limitOffset ||
		select->limitCount || select->lockingClause ||
		select->withClause || list_length(select->targetList) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s of table %s must be a single expression",
						src->what, src->relname),
				 errdetail("Clauses such as FROM, WHERE, UNION or a second column are not allowed.")));
	target = linitial_node(ResTarget, select->targetList);
	if (target->name != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("%s of table %s must be a single expression",
						src->what, src->relname),
				 errdetail("A column alias (AS %s) is not allowed.", target->name)));
	return target->val;
}

/* Raw-tree walker: true if the expression contains a subquery. */
static bool
ContainsSubLink(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, SubLink))
		return true;
	return raw_expression_tree_walker(node, ContainsSubLink, context);
}

/*
 * Walker: refuse system columns and whole-row references, which are not
 * the same on another server.
 */
static bool
OnlyUserColumnsWalker(Node *node, void *context)
{
	const ExprSource *src = (const ExprSource *) context;

	if (node == NULL)
		return false;
	if (IsA(node, Var) && ((Var *) node)->varattno <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("%s of table %s may reference only the table's own columns",
						src->what, src->relname),
				 errdetail("System columns and whole-row references differ from server to server.")));
	return expression_tree_walker(node, OnlyUserColumnsWalker, context);
}

/*
 * Built-in functions that must not be called from a filter or an anonymize
 * rule although they are not volatile: they read other tables, files,
 * settings or other sessions' activity.  Matched as name prefixes.
 */
static const char *const forbidden_builtins[] = {
	"table_to_xml", "schema_to_xml", "database_to_xml", "query_to_xml",
	"cursor_to_xml", "current_setting", "pg_show_all_settings", "pg_read_",
	"pg_ls_", "pg_stat_", "lo_", "pg_get_", "pg_settings_", "pg_options_to_table",
	"pg_sequence_", "pg_event_trigger_", "pg_identify_object", "pg_describe_object",
	"pg_control_", "pg_current_", "pg_last_", "pg_walfile_", "pg_backup_",
	"pg_replication_", "pg_logical_", "pg_ident_", "pg_hba_", "pg_snapshot_",
	"txid_", "inet_client_", "inet_server_", "pg_blocking_pids",
	"pg_safe_snapshot_blocking_pids", "pg_conf_load_time", "pg_postmaster_start_time",
	"pg_tablespace_", "pg_database_size", "pg_relation_", "pg_total_relation_size",
	"pg_table_size", "pg_indexes_size", "pg_size_", "has_", "pg_has_role",
	"row_security_active", "pg_column_size", "pg_visible_in_snapshot",
	"pg_xact_", "pg_get_wal_", "pg_filenode_relation", "pg_partition_",
	NULL
};

/*
 * check_functions_in_node callback: true if a function may not be called.
 */
static bool
ForbiddenFunction(Oid funcid, void *context)
{
	const char *name;
	int			i;

	if (funcid >= FirstNormalObjectId)
		return true;
	name = get_func_name(funcid);
	if (name == NULL)
		return true;
	for (i = 0; forbidden_builtins[i] != NULL; i++)
		if (strncmp(name, forbidden_builtins[i], strlen(forbidden_builtins[i])) == 0)
			return true;
	return false;
}

/* Walker: the first node that calls a forbidden function, or NULL. */
static bool
ForbiddenFunctionWalker(Node *node, Node **found)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, ForbiddenFunction, NULL))
	{
		*found = node;
		return true;
	}
	return expression_tree_walker(node, ForbiddenFunctionWalker, (void *) found);
}

/* Name of a function that node calls and that ForbiddenFunction refuses. */
static bool
FirstForbidden(Oid funcid, void *context)
{
	if (ForbiddenFunction(funcid, NULL))
	{
		*(Oid *) context = funcid;
		return true;
	}
	return false;
}

/* Is type one of PostgreSQL's own, and not a domain? */
static bool
BuiltinType(Oid type)
{
	return type < FirstNormalObjectId && get_typtype(type) != TYPTYPE_DOMAIN;
}

/*
 * Walker: refuse a node whose types or collation are not PostgreSQL's own
 * (a value of a user type, a cast through a domain or a user type, a user
 * collation): they would run code of whoever created them.  A column of
 * the row may be of any type, and so may a NULL: reading them runs nothing.
 */
static bool
BuiltinTypesWalker(Node *node, void *context)
{
	const ExprSource *src = (const ExprSource *) context;
	Oid			type;
	Oid			collation;

	if (node == NULL)
		return false;
	/* a column's value, or a NULL, runs no code of its type */
	if (IsA(node, Var) || (IsA(node, Const) && ((Const *) node)->constisnull))
		return false;
	/* parts of an expression that have no type of their own */
	if (IsA(node, List) || IsA(node, CaseWhen))
		return expression_tree_walker(node, BuiltinTypesWalker, context);
	type = exprType(node);
	if (IsA(node, CoerceToDomain) || IsA(node, CoerceToDomainValue) || !BuiltinType(type))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s of table %s must not use type %s",
						src->what, src->relname, format_type_be(type)),
				 errdetail("Only PostgreSQL's built-in types may be used, and no domain: a domain's constraints and a user type's functions could run any code.")));
	collation = exprCollation(node);
	if (!OidIsValid(collation))
		collation = exprInputCollation(node);
	if (OidIsValid(collation) && collation >= FirstNormalObjectId)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s of table %s must not use collation %s",
						src->what, src->relname, generate_collation_name(collation)),
				 errdetail("Only PostgreSQL's built-in collations may be used.")));
	return expression_tree_walker(node, BuiltinTypesWalker, context);
}

/*
 * Parse and analyse one expression over rel.  Returns the analysed
 * expression and its parse state.
 */
static Node *
AnalyseExpression(Relation rel, const ExprSource *src, ParseState **pstate_out)
{
	char	   *sql = psprintf(EXPR_PREFIX "%s", src->text);
	ErrorContextCallback callback;
	List	   *stmts;
	Node	   *expr;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Node	   *forbidden = NULL;
	int			save_nestlevel;

	/* resolve names as built-ins only, whatever the session's search_path */
	save_nestlevel = SyncPinSettings(false);

	callback.callback = ExprErrorCallback;
	callback.arg = (void *) src;
	callback.previous = error_context_stack;
	error_context_stack = &callback;

#if PG_VERSION_NUM >= 140000
	stmts = raw_parser(sql, RAW_PARSE_DEFAULT);
#else
	stmts = raw_parser(sql);
#endif
	expr = SingleExpression(stmts, src);

	/* before analysis, which would look up the tables a subquery names */
	if (ContainsSubLink(expr, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s of table %s must not contain a subquery",
						src->what, src->relname),
				 errdetail("It may reference only the columns of the row it is evaluated for.")));

	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = sql;
	nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock,
										   NULL, false, true);
	addNSItemToQuery(pstate, nsitem, false, true, true);
	expr = transformExpr(pstate, expr, EXPR_KIND_SELECT_TARGET);

	Assert(!pstate->p_hasSubLinks);
	if (pstate->p_hasAggs)
		ereport(ERROR,
				(errcode(ERRCODE_GROUPING_ERROR),
				 errmsg("%s of table %s must not use aggregate functions",
						src->what, src->relname)));
	if (pstate->p_hasWindowFuncs)
		ereport(ERROR,
				(errcode(ERRCODE_WINDOWING_ERROR),
				 errmsg("%s of table %s must not use window functions",
						src->what, src->relname)));
	if (pstate->p_hasTargetSRFs || expression_returns_set(expr))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s of table %s must not use set-returning functions",
						src->what, src->relname)));
	OnlyUserColumnsWalker(expr, (void *) src);
	assign_expr_collations(pstate, expr);
	BuiltinTypesWalker(expr, (void *) src);
	if (ForbiddenFunctionWalker(expr, &forbidden))
	{
		Oid			funcid = InvalidOid;

		check_functions_in_node(forbidden, FirstForbidden, &funcid);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s of table %s must not call function %s",
						src->what, src->relname, format_procedure(funcid)),
				 errdetail("Only PostgreSQL's built-in functions and operators may be used, and none that reads other tables, files, settings or server activity."),
				 errhint("Compute the value with a built-in expression over the row's own columns.")));
	}
	if (contain_volatile_functions(expr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("%s of table %s must not call volatile functions",
						src->what, src->relname),
				 errdetail("The expression is evaluated for every row of every dump, which must give the same result each time and change nothing."),
				 errhint("Use only immutable or stable functions and operators.")));

	error_context_stack = callback.previous;
	AtEOXact_GUC(true, save_nestlevel);
	*pstate_out = pstate;
	return expr;
}

/*
 * Validate a table's filter: a boolean expression over its own columns.
 * With alias, returns the expression as PostgreSQL deparses it, its column
 * references qualified by alias, for building the dump query.
 */
char *
SyncFilterSql(Relation rel, const char *filter, const char *alias)
{
	ExprSource	src;
	ParseState *pstate;
	Node	   *expr;
	Oid			type;
	char	   *sql = NULL;

	src.what = "filter";
	src.relname = SyncRelationName(RelationGetRelid(rel));
	src.text = filter;
	expr = AnalyseExpression(rel, &src, &pstate);
	type = exprType(expr);
	if (type != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("filter of table %s must be of type boolean, not %s",
						src.relname, format_type_be(type))));
	if (alias)
		sql = deparse_expression(expr,
								 deparse_context_for(alias, RelationGetRelid(rel)),
								 true, false);
	free_parsestate(pstate);
	return sql;
}

/*
 * Validate one anonymize rule: column must be a column of rel other than
 * the key, and the expression's value must be assignable to it.  With
 * alias, returns the SQL that computes the column's published value.
 */
static char *
AnonymizeRuleSql(Relation rel, AttrNumber key_attnum,
				 const char *column, const char *text, const char *alias)
{
	char	   *sql = NULL;
	Node	   *coerced;
	ExprSource	src;
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), column);
	Form_pg_attribute att;
	ParseState *pstate;
	Node	   *expr;
	Oid			type;
	Oid			base;
	int32		typmod;

	src.relname = SyncRelationName(RelationGetRelid(rel));
	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("anonymize rule names column \"%s\", which table %s does not have",
						column, src.relname)));
	if (attnum == key_attnum)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key column \"%s\" of table %s cannot be anonymized",
						column, src.relname),
				 errdetail("Subscribers identify rows by their key.")));
	if (SyncColumnInForeignKey(RelationGetRelid(rel), attnum))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column \"%s\" of table %s takes part in a foreign key and cannot be anonymized",
						column, src.relname),
				 errdetail("An anonymized value would no longer match the rows it references or that reference it, and the real value would reach subscribers through them.")));
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	/* a domain's value is published as its base type's */
	typmod = att->atttypmod;
	base = getBaseTypeAndTypmod(att->atttypid, &typmod);

	src.what = psprintf("anonymize rule for column \"%s\"", column);
	src.text = text;
	expr = AnalyseExpression(rel, &src, &pstate);
	type = exprType(expr);
	coerced = coerce_to_target_type(pstate, expr, type, base, typmod,
									COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);
	if (coerced == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("anonymize rule for column \"%s\" of table %s is of type %s, which cannot be assigned to the column's type %s",
						column, src.relname, format_type_be(type),
						format_type_be(base)),
				 errhint("Cast the expression to %s.", format_type_be(base))));
	BuiltinTypesWalker(coerced, (void *) &src);
	if (alias)
		sql = psprintf("CAST((%s) AS %s)",
					   deparse_expression(coerced,
										  deparse_context_for(alias, RelationGetRelid(rel)),
										  true, false),
					   format_type_with_typemod(base, typmod));
	free_parsestate(pstate);
	return sql;
}

/*
 * Validate a table's anonymize rules: a JSON object that maps column names
 * to SQL expressions given as strings.  With alias, returns a list of
 * SyncAnonymizedColumn, the SQL for each column's published value.
 */
List *
SyncAnonymizeSql(Relation rel, AttrNumber key_attnum, Jsonb *rules,
				 const char *alias)
{
	List	   *result = NIL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (JB_ROOT_IS_SCALAR(rules) || !JB_ROOT_IS_OBJECT(rules))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("anonymize rules of table %s must be a JSON object",
						SyncRelationName(RelationGetRelid(rel))),
				 errdetail("The rules map column names to SQL expressions, as in {\"email\": \"'user' || id || '@example.org'\"}.")));

	it = JsonbIteratorInit(&rules->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *column;

		if (tok != WJB_KEY)
			continue;
		column = pnstrdup(v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("anonymize rule for column \"%s\" of table %s must be a string",
							column, SyncRelationName(RelationGetRelid(rel))),
					 errdetail("Each rule is an SQL expression written as a JSON string."),
					 errhint("To blank a column, write \"NULL\" as a string.")));
		{
			SyncAnonymizedColumn *col = palloc(sizeof(SyncAnonymizedColumn));

			col->column = column;
			col->sql = AnonymizeRuleSql(rel, key_attnum, column,
										pnstrdup(v.val.string.val, v.val.string.len),
										alias);
			result = lappend(result, col);
		}
	}
	return result;
}
