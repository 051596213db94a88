//! Decides from the query's parse tree whether its rows can be split on the
//! rows of one table, its driving table: one plain SELECT whose first FROM
//! item is a table, joined only in ways that keep each of that table's rows
//! (inner, cross and left joins from it), with nothing that merges, drops or
//! repeats rows as a whole (set operations, DISTINCT, GROUP BY, HAVING,
//! LIMIT, WITH). Each output row then comes from exactly one row of the
//! driving table, so a column of that row (its key or `ctid`) added to the
//! select list splits the query into disjoint chunks whose filter PostgreSQL
//! pushes down to the driving table's scan.
//!
//! The added item is placed by the lexer's token positions, just before the
//! FROM keyword, so the user's SQL stays byte for byte what they wrote (the
//! parser's printer does not round-trip every PostgreSQL construct).
//! Aggregates and window functions look like plain function calls in the
//! parse tree; `blocking_node` finds them in the query's plan instead.

use serde_json::Value;
use sqlparser::ast::{
    Distinct, GroupByExpr, JoinOperator, SetExpr, Spanned, Statement, TableFactor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, Tokenizer};

/// The query's driving table, as the query writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driving {
    /// The table's name as written (`public."Heap"`), for `to_regclass`.
    pub table: String,
    /// How the query qualifies the table's columns: its alias, or the
    /// table's name, as written.
    pub qualifier: String,
    /// The alias as PostgreSQL folds it (EXPLAIN's `Alias`).
    pub plan_alias: String,
    /// Whether the alias renames the table's columns (`AS h(a, b)`), so its
    /// key columns cannot be named.
    pub renames_columns: bool,
    /// Whether other relations join it.
    pub joined: bool,
    /// Byte offset of the FROM keyword: where a select item is added.
    insert_at: usize,
}

impl Driving {
    /// The query with `expr AS name` added as its last select item.
    pub fn with_item(&self, sql: &str, expr: &str, name: &str) -> String {
        let (head, tail) = sql.split_at(self.insert_at);
        format!("{}, {expr} AS {name} {tail}", head.trim_end())
    }
}

/// Why a query cannot be split on a driving table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSplittable(pub String);

fn no(why: impl Into<String>) -> NotSplittable {
    NotSplittable(why.into())
}

/// Finds the driving table of `sql`, or says why its rows cannot be split
/// on one table's rows.
pub fn analyse(sql: &str) -> Result<Driving, NotSplittable> {
    let dialect = PostgreSqlDialect {};
    let statements = Parser::parse_sql(&dialect, sql)
        .map_err(|e| no(format!("Ferry's SQL parser does not read it ({e})")))?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return Err(no("it is not one SELECT statement"));
    };
    if query.with.is_some() {
        return Err(no("it has a WITH clause"));
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return Err(no("it has LIMIT, OFFSET or FETCH"));
    }
    if !query.locks.is_empty() || query.for_clause.is_some() {
        return Err(no("it has a locking clause (FOR UPDATE/SHARE)"));
    }
    let select = match query.body.as_ref() {
        SetExpr::Select(s) => s,
        SetExpr::SetOperation { op, .. } => {
            return Err(no(format!("it is a set operation ({op})")))
        }
        _ => return Err(no("it is not a plain SELECT")),
    };
    if matches!(select.distinct, Some(Distinct::Distinct | Distinct::On(_))) {
        return Err(no("it has DISTINCT"));
    }
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
    };
    if grouped {
        return Err(no("it has GROUP BY"));
    }
    if select.having.is_some() {
        return Err(no("it has HAVING"));
    }
    if !select.named_window.is_empty() {
        return Err(no("it has a WINDOW clause"));
    }
    if select.into.is_some() {
        return Err(no("it has SELECT INTO"));
    }
    let Some(first) = select.from.first() else {
        return Err(no("it reads no table"));
    };
    let TableFactor::Table {
        name,
        alias,
        args: None,
        sample: None,
        ..
    } = &first.relation
    else {
        return Err(no(
            "its first FROM item is not a table (a subquery, function or parenthesized join)",
        ));
    };
    for join in &first.joins {
        match &join.join_operator {
            JoinOperator::Join(_)
            | JoinOperator::Inner(_)
            | JoinOperator::CrossJoin(_)
            | JoinOperator::Left(_)
            | JoinOperator::LeftOuter(_) => {}
            JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                return Err(no(
                    "it has a RIGHT JOIN, so some rows come from no row of its first table",
                ))
            }
            JoinOperator::FullOuter(_) => {
                return Err(no(
                    "it has a FULL JOIN, so some rows come from no row of its first table",
                ))
            }
            other => {
                return Err(no(format!(
                    "it has a join Ferry does not split ({other:?})"
                )))
            }
        }
    }
    let table = text_of(sql, name.span()).ok_or_else(|| no("its table name has no position"))?;
    let (qualifier, plan_alias, renames_columns) = match alias {
        Some(a) => (
            text_of(sql, a.name.span).ok_or_else(|| no("its table alias has no position"))?,
            folded(&a.name.value, a.name.quote_style.is_some()),
            !a.columns.is_empty(),
        ),
        None => {
            let last = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .ok_or_else(|| no("its table name is not an identifier"))?;
            (
                table.clone(),
                folded(&last.value, last.quote_style.is_some()),
                false,
            )
        }
    };
    let insert_at =
        from_keyword(sql, name.span().start).ok_or_else(|| no("its FROM keyword was not found"))?;
    Ok(Driving {
        table,
        qualifier,
        plan_alias,
        renames_columns,
        joined: !first.joins.is_empty() || select.from.len() > 1,
        insert_at,
    })
}

/// An identifier as PostgreSQL stores it: quoted as is, unquoted folded to
/// lower case.
fn folded(value: &str, quoted: bool) -> String {
    if quoted {
        value.to_string()
    } else {
        value.to_lowercase()
    }
}

/// The byte offset of a lexer location (lines and columns count characters
/// from 1).
fn offset(sql: &str, at: Location) -> Option<usize> {
    let (mut line, mut col) = (1u64, 1u64);
    for (i, c) in sql.char_indices() {
        if line == at.line && col == at.column {
            return Some(i);
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line == at.line && col == at.column).then_some(sql.len())
}

/// The text a span covers (the lexer's end is one past its last character).
fn text_of(sql: &str, span: sqlparser::tokenizer::Span) -> Option<String> {
    let (a, b) = (offset(sql, span.start)?, offset(sql, span.end)?);
    (a < b).then(|| sql[a..b].to_string())
}

/// The byte offset of the last FROM keyword before `table` (only blanks,
/// comments and ONLY can stand between them).
fn from_keyword(sql: &str, table: Location) -> Option<usize> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .ok()?;
    let before = |l: Location| (l.line, l.column) < (table.line, table.column);
    let from = tokens.iter().rev().find(|t| {
        before(t.span.start) && matches!(&t.token, Token::Word(w) if w.keyword == Keyword::FROM)
    })?;
    offset(sql, from.span.start)
}

/// Plan nodes that merge, drop or repeat rows as a whole: above the driving
/// table's scan, its rows no longer map one to one onto the output.
const BLOCKING_NODES: &[(&str, &str)] = &[
    ("Aggregate", "aggregates rows"),
    ("Group", "groups rows"),
    ("WindowAgg", "has a window function"),
    ("Unique", "removes duplicate rows"),
    ("SetOp", "is a set operation"),
    ("Limit", "has a LIMIT"),
    ("Recursive Union", "is recursive"),
];

/// What in the plan `root` (EXPLAIN VERBOSE, FORMAT JSON) stands between the
/// output and the scan of the driving table `alias`, if anything does: a
/// node that merges rows, or the scan missing (the table read through
/// something Ferry cannot see into). Subplans (scalar subqueries) do not
/// count.
pub fn blocking_node(root: &Value, alias: &str) -> Option<String> {
    fn path<'a>(node: &'a Value, alias: &str, out: &mut Vec<&'a Value>) -> bool {
        out.push(node);
        if node.get("Relation Name").is_some()
            && node.get("Alias").and_then(Value::as_str) == Some(alias)
        {
            return true;
        }
        let children = node.get("Plans").and_then(Value::as_array);
        for child in children.into_iter().flatten() {
            let sub = child.get("Parent Relationship").and_then(Value::as_str);
            if matches!(sub, Some("InitPlan" | "SubPlan")) {
                continue;
            }
            if path(child, alias, out) {
                return true;
            }
        }
        out.pop();
        false
    }
    let mut nodes = Vec::new();
    if !path(root, alias, &mut nodes) {
        return Some(format!(
            "its plan reads the table (alias {alias}) in no scan of its own"
        ));
    }
    nodes.iter().find_map(|n| {
        let ty = n.get("Node Type").and_then(Value::as_str)?;
        BLOCKING_NODES
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(t, what)| format!("it {what} ({t} in its plan)"))
    })
}

/// Whether the plan `root` reads the table `alias` with a node of type `node`
/// (e.g. `Tid Range Scan`) anywhere in its tree.
pub fn reads_with(root: &Value, node: &str, alias: &str) -> bool {
    let this = root.get("Node Type").and_then(Value::as_str) == Some(node)
        && root.get("Alias").and_then(Value::as_str) == Some(alias);
    this || root
        .get("Plans")
        .and_then(Value::as_array)
        .is_some_and(|children| children.iter().any(|c| reads_with(c, node, alias)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn why(sql: &str) -> String {
        analyse(sql).expect_err(sql).0
    }

    #[test]
    fn finds_the_driving_table_as_written() {
        let d = analyse("select * from heap").unwrap();
        assert_eq!((d.table.as_str(), d.qualifier.as_str()), ("heap", "heap"));
        assert!(!d.joined);
        assert_eq!(
            d.with_item("select * from heap", "heap.ctid", "ferry_split"),
            "select *, heap.ctid AS ferry_split from heap"
        );
        let sql = "SELECT h.id, c.name\n  FROM public.\"Heap\" AS \"H\" JOIN cust c ON c.id = h.cid WHERE h.x > 1";
        let d = analyse(sql).unwrap();
        assert_eq!(d.table, "public.\"Heap\"");
        assert_eq!(d.qualifier, "\"H\"");
        assert_eq!(d.plan_alias, "H");
        assert!(d.joined);
        assert_eq!(
            d.with_item(sql, "\"H\".ctid", "ferry_split"),
            "SELECT h.id, c.name, \"H\".ctid AS ferry_split FROM public.\"Heap\" AS \"H\" JOIN cust c ON c.id = h.cid WHERE h.x > 1"
        );
        let d = analyse("select Ü.a from Schema1.Tbl Ü left join x on true").unwrap();
        assert_eq!(
            (d.table.as_str(), d.plan_alias.as_str()),
            ("Schema1.Tbl", "ü")
        );
        assert!(analyse("select * from t h(a, b)").unwrap().renames_columns);
    }

    #[test]
    fn the_from_keyword_is_found_by_tokens_not_text() {
        let sql = "select a is distinct from b as d, extract(year from t) as y, 'from' as \"from\" /* from */ from only -- from\n t";
        let d = analyse(sql).unwrap();
        let out = d.with_item(sql, "t.ctid", "k");
        assert!(
            out.ends_with("/* from */, t.ctid AS k from only -- from\n t"),
            "{out}"
        );
    }

    #[test]
    fn keeps_rows_one_to_one_or_says_why() {
        for ok in [
            "select * from a join b on a.x = b.x",
            "select * from a inner join b using (x) cross join c",
            "select * from a left join b on true left outer join c on true",
            "select * from a, b right join c on true where a.x = c.x",
            "select a.x, (select max(y) from b) from a order by 1",
            "select * from a natural join b",
        ] {
            assert!(analyse(ok).is_ok(), "{ok}");
        }
        assert!(why("select * from a union select * from b").contains("set operation"));
        assert!(why("select * from a limit 5").contains("LIMIT"));
        assert!(why("select * from a offset 5").contains("LIMIT"));
        assert!(why("select * from a fetch first 5 rows only").contains("FETCH"));
        assert!(why("select distinct x from a").contains("DISTINCT"));
        assert!(why("select distinct on (x) x from a").contains("DISTINCT"));
        assert!(why("select x from a group by x").contains("GROUP BY"));
        assert!(why("select 1 from a having true").contains("HAVING"));
        assert!(why("with w as (select 1) select * from w").contains("WITH"));
        assert!(why("select * from b right join a on true").contains("RIGHT JOIN"));
        assert!(why("select * from a full join b on true").contains("FULL JOIN"));
        assert!(why("select * from (select 1) s").contains("not a table"));
        assert!(why("select * from generate_series(1, 3)").contains("not a table"));
        assert!(why("select * from (a join b on true)").contains("not a table"));
        assert!(why("select 1").contains("no table"));
        assert!(why("select * from a for update").contains("locking"));
        assert!(why("select * from a tablesample system (1)").contains("not a table"));
        assert!(why("delete from a").contains("not one SELECT"));
        assert!(why("select * from a; select 1").contains("not one SELECT"));
        assert!(why("select (").contains("parser"));
    }

    #[test]
    fn plan_nodes_above_the_driving_scan_block_it() {
        let scan =
            |alias: &str| json!({"Node Type": "Seq Scan", "Relation Name": "t", "Alias": alias});
        let agg = json!({"Node Type": "Aggregate", "Plans": [scan("h")]});
        assert!(blocking_node(&agg, "h").unwrap().contains("Aggregate"));
        let join = json!({"Node Type": "Hash Join", "Plans": [
            scan("h"),
            {"Node Type": "Hash", "Plans": [{"Node Type": "Aggregate", "Plans": [scan("c")]}]},
            {"Node Type": "Aggregate", "Parent Relationship": "InitPlan", "Plans": [scan("h")]}
        ]});
        assert_eq!(blocking_node(&join, "h"), None);
        let window = json!({"Node Type": "WindowAgg", "Plans": [{"Node Type": "Sort", "Plans": [scan("h")]}]});
        assert!(blocking_node(&window, "h").unwrap().contains("window"));
        assert!(blocking_node(&scan("x"), "h").unwrap().contains("no scan"));
        let tid = json!({"Node Type": "Hash Join", "Plans": [{"Node Type": "Tid Range Scan", "Alias": "h"}, scan("c")]});
        assert!(reads_with(&tid, "Tid Range Scan", "h"));
        assert!(!reads_with(&tid, "Tid Range Scan", "c"));
    }
}
