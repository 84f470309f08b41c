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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "sync.h"

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

	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = sql;
	nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock,
										   NULL, false, true);
	addNSItemToQuery(pstate, nsitem, false, true, true);
	expr = transformExpr(pstate, expr, EXPR_KIND_SELECT_TARGET);

	if (pstate->p_hasSubLinks)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s of table %s must not contain a subquery",
						src->what, src->relname),
				 errdetail("It may reference only the columns of the row it is evaluated for.")));
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
	if (contain_volatile_functions(expr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s of table %s must not call volatile functions",
						src->what, src->relname),
				 errdetail("The expression is evaluated for every row of every dump, which must give the same result each time and change nothing."),
				 errhint("Use only immutable or stable functions and operators.")));

	error_context_stack = callback.previous;
	*pstate_out = pstate;
	return expr;
}

/*
 * Validate a table's filter: a boolean expression over its own columns.
 */
void
SyncValidateFilter(Relation rel, const char *filter)
{
	ExprSource	src;
	ParseState *pstate;
	Node	   *expr;
	Oid			type;

	src.what = "filter";
	src.relname = SyncRelationName(RelationGetRelid(rel));
	src.text = filter;
	expr = AnalyseExpression(rel, &src, &pstate);
	type = exprType(expr);
	if (type != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("filter of table %s must be of type boolean, not %s",
						src.relname, format_type_be(type)),
				 errdetail("Filter: %s", filter)));
	free_parsestate(pstate);
}

/*
 * Validate one anonymize rule: column must be a column of rel other than
 * the key, and the expression's value must be assignable to it.
 */
static void
ValidateAnonymizeRule(Relation rel, AttrNumber key_attnum,
					  const char *column, const char *text)
{
	ExprSource	src;
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), column);
	Form_pg_attribute att;
	ParseState *pstate;
	Node	   *expr;
	Oid			type;

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
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);

	src.what = psprintf("anonymize rule for column \"%s\"", column);
	src.text = text;
	expr = AnalyseExpression(rel, &src, &pstate);
	type = exprType(expr);
	if (coerce_to_target_type(pstate, expr, type, att->atttypid,
							  att->atttypmod, COERCION_ASSIGNMENT,
							  COERCE_IMPLICIT_CAST, -1) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("anonymize rule for column \"%s\" of table %s is of type %s, which cannot be assigned to the column's type %s",
						column, src.relname, format_type_be(type),
						format_type_be(att->atttypid)),
				 errhint("Cast the expression to %s.", format_type_be(att->atttypid))));
	free_parsestate(pstate);
}

/*
 * Validate a table's anonymize rules: a JSON object that maps column names
 * to SQL expressions given as strings.
 */
void
SyncValidateAnonymize(Relation rel, AttrNumber key_attnum, Jsonb *rules)
{
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
		ValidateAnonymizeRule(rel, key_attnum, column,
							  pnstrdup(v.val.string.val, v.val.string.len));
	}
}
