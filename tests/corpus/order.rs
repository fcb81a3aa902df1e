//! How a corpus query's result is compared: as a multiset, or in the order its top-level
//! ORDER BY fixes, and only as far as it fixes it.
//!
//! Rows that tie on the sort keys may come in any order, and under a LIMIT the last tied group
//! may be cut anywhere; so an ordered query is run with its sort keys added as extra output
//! columns (unless they are output columns already), and two results agree when their sort-key
//! sequences are equal and each group of tied rows holds the same multiset of rows (except the
//! group a LIMIT or OFFSET may cut, whose size and keys must still agree).

use sqlparser::ast::{
    Expr, Ident, LimitClause, OrderByKind, SelectItem, SetExpr, Statement, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// How to run and compare one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// No top-level ORDER BY and no LIMIT: the rows as a multiset.
    Bag,
    /// Run `sql` (the query with its sort keys appended as output columns where needed);
    /// the first `width` columns are the query's own, `keys` index the sort keys.
    Ordered {
        sql: String,
        width: usize,
        keys: Vec<usize>,
        /// An OFFSET may cut the first group of tied rows.
        offset: bool,
        /// A LIMIT or FETCH may cut the last group of tied rows.
        limit: bool,
    },
    /// A LIMIT without ORDER BY (or an ORDER BY whose keys cannot be added as columns): which
    /// rows come back is up to the plan, so only the number of rows is compared.
    CountOnly(&'static str),
}

/// `columns`: the names of the query's output columns, as PostgreSQL reports them.
pub fn plan(sql: &str, columns: &[String]) -> Compare {
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Compare::CountOnly("the test cannot parse the query");
    };
    let Some(Statement::Query(query)) = statements.pop() else {
        return Compare::CountOnly("not a query");
    };
    let mut query = *query;
    let limit = query.fetch.is_some()
        || matches!(
            &query.limit_clause,
            Some(
                LimitClause::LimitOffset { limit: Some(_), .. }
                    | LimitClause::OffsetCommaLimit { .. }
            )
        );
    let offset = matches!(
        &query.limit_clause,
        Some(
            LimitClause::LimitOffset {
                offset: Some(_),
                ..
            } | LimitClause::OffsetCommaLimit { .. }
        )
    );
    let exprs = match &query.order_by {
        None if limit || offset => return Compare::CountOnly("LIMIT without ORDER BY"),
        None => return Compare::Bag,
        Some(order_by) => match &order_by.kind {
            OrderByKind::Expressions(exprs) => exprs.clone(),
            OrderByKind::All(_) => return Compare::CountOnly("ORDER BY ALL"),
        },
    };
    let width = columns.len();
    let mut keys = Vec::new();
    let mut added: Vec<SelectItem> = Vec::new();
    let projection: Vec<String> = match &*query.body {
        SetExpr::Select(select) => select
            .projection
            .iter()
            .map(|item| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    e.to_string()
                }
                _ => String::new(),
            })
            .collect(),
        _ => Vec::new(),
    };
    for item in &exprs {
        let expr = &item.expr;
        // PostgreSQL reads a bare number as an output position and a bare name as an output
        // column first.
        if let Expr::Value(v) = expr {
            if let Value::Number(n, _) = &v.value {
                if let Ok(position) = n.parse::<usize>() {
                    keys.push(position - 1);
                    continue;
                }
            }
        }
        if let Expr::Identifier(ident) = expr {
            let name = fold(ident);
            if let Some(index) = columns.iter().position(|c| *c == name) {
                keys.push(index);
                continue;
            }
        }
        let text = expr.to_string();
        if let Some(index) = projection.iter().position(|p| *p == text) {
            if index < width && !projection.is_empty() && projection.len() == width {
                keys.push(index);
                continue;
            }
        }
        let SetExpr::Select(select) = &*query.body else {
            return Compare::CountOnly("ORDER BY an expression over a set operation");
        };
        if select.distinct.is_some() {
            return Compare::CountOnly(
                "ORDER BY an expression that SELECT DISTINCT does not output",
            );
        }
        keys.push(width + added.len());
        added.push(SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::new(format!("rg_sort_key_{}", added.len())),
        });
    }
    if !added.is_empty() {
        let SetExpr::Select(select) = &mut *query.body else {
            unreachable!("checked above");
        };
        select.projection.extend(added);
    }
    Compare::Ordered {
        sql: query.to_string(),
        width,
        keys,
        offset,
        limit,
    }
}

fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// One row, already encoded: its own columns and its sort key, each as canonical text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub key: String,
    pub own: String,
}

/// Whether two results agree under `compare`; `Err` says how they differ.
pub fn agree(compare: &Compare, ours: &[Row], theirs: &[Row]) -> Result<(), String> {
    if ours.len() != theirs.len() {
        return Err(format!("{} rows against {}", ours.len(), theirs.len()));
    }
    match compare {
        Compare::CountOnly(_) => Ok(()),
        Compare::Bag => {
            let mut a: Vec<&String> = ours.iter().map(|r| &r.own).collect();
            let mut b: Vec<&String> = theirs.iter().map(|r| &r.own).collect();
            a.sort();
            b.sort();
            match a.iter().zip(&b).position(|(x, y)| x != y) {
                None => Ok(()),
                Some(i) => Err(format!(
                    "sorted rows differ first at {i}: {} | {}",
                    a[i], b[i]
                )),
            }
        }
        Compare::Ordered { offset, limit, .. } => {
            if let Some(i) = (0..ours.len()).find(|&i| ours[i].key != theirs[i].key) {
                return Err(format!(
                    "sort keys differ at row {i}: {} | {}",
                    ours[i].key, theirs[i].key
                ));
            }
            let groups = groups(ours);
            for (g, range) in groups.iter().enumerate() {
                if (*offset && g == 0) || (*limit && g + 1 == groups.len()) {
                    continue;
                }
                let mut a: Vec<&String> = ours[range.clone()].iter().map(|r| &r.own).collect();
                let mut b: Vec<&String> = theirs[range.clone()].iter().map(|r| &r.own).collect();
                a.sort();
                b.sort();
                if a != b {
                    return Err(format!(
                        "rows {}..{} (tied on {}) differ: {a:?} | {b:?}",
                        range.start, range.end, ours[range.start].key
                    ));
                }
            }
            Ok(())
        }
    }
}

/// The ranges of consecutive rows with equal sort keys.
fn groups(rows: &[Row]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=rows.len() {
        if i == rows.len() || rows[i].key != rows[start].key {
            out.push(start..i);
            start = i;
        }
    }
    out
}

#[test]
fn sort_keys_are_found_by_position_name_or_expression_and_added_otherwise() {
    let cols = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(plan("SELECT a FROM t", &cols(&["a"])), Compare::Bag);
    assert_eq!(
        plan("SELECT a FROM t LIMIT 3", &cols(&["a"])),
        Compare::CountOnly("LIMIT without ORDER BY")
    );
    assert_eq!(
        plan(
            "SELECT a, sum(b) AS total FROM t GROUP BY a ORDER BY total DESC, 1",
            &cols(&["a", "total"])
        ),
        Compare::Ordered {
            sql: "SELECT a, sum(b) AS total FROM t GROUP BY a ORDER BY total DESC, 1".into(),
            width: 2,
            keys: vec![1, 0],
            offset: false,
            limit: false
        }
    );
    assert_eq!(
        plan(
            "SELECT t.a FROM t ORDER BY t.b NULLS LAST, t.a LIMIT 5",
            &cols(&["a"])
        ),
        Compare::Ordered {
            sql: "SELECT t.a, t.b AS rg_sort_key_0 FROM t ORDER BY t.b NULLS LAST, t.a LIMIT 5"
                .into(),
            width: 1,
            keys: vec![1, 0],
            offset: false,
            limit: true
        }
    );
    let row = |key: &str, own: &str| Row {
        key: key.into(),
        own: own.into(),
    };
    let ordered = |offset, limit| Compare::Ordered {
        sql: String::new(),
        width: 1,
        keys: vec![0],
        offset,
        limit,
    };
    // Ties may come in any order; keys may not.
    let a = [row("1", "x"), row("1", "y"), row("2", "z")];
    let b = [row("1", "y"), row("1", "x"), row("2", "z")];
    assert_eq!(agree(&ordered(false, false), &a, &b), Ok(()));
    let c = [row("2", "z"), row("1", "x"), row("1", "y")];
    assert!(agree(&ordered(false, false), &a, &c).is_err());
    // Under a LIMIT, the last tied group may hold different rows, the others may not.
    let d = [row("1", "x"), row("1", "y"), row("2", "w")];
    assert!(agree(&ordered(false, false), &a, &d).is_err());
    assert_eq!(agree(&ordered(false, true), &a, &d), Ok(()));
    let e = [row("1", "x"), row("1", "q"), row("1", "w"), row("3", "w")];
    let f = [row("1", "x"), row("1", "y"), row("1", "w"), row("3", "w")];
    assert_eq!(
        agree(&ordered(true, false), &e, &f),
        Ok(()),
        "the first group may be cut by OFFSET"
    );
    assert!(
        agree(&ordered(false, true), &e, &f).is_err(),
        "but not by LIMIT"
    );
    assert!(agree(&Compare::Bag, &a, &d).is_err());
}
