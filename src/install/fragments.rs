//! Building install's SQL from the policy's fragments: placeholders substituted on the tree,
//! templates filled, and every statement printed and checked to read back the same.

use super::*;

/// The policy's fragments, ready to embed: each attribute query with `:user_id` substituted.
pub(super) struct Fragments<'a> {
    pub(super) policy: &'a Policy,
    pub(super) caller: Query,
    pub(super) gate: Expr,
    pub(super) attributes: BTreeMap<String, Query>,
    pub(super) arrays: BTreeMap<String, Expr>,
}

impl<'a> Fragments<'a> {
    pub(super) fn new(policy: &'a Policy) -> Result<Fragments<'a>, InstallError> {
        Fragments::with_caller(policy, CALLER_QUERY)
    }

    /// Fragments where `:user_id` becomes `(<caller_query>)`.
    pub(super) fn with_caller(
        policy: &'a Policy,
        caller_query: &str,
    ) -> Result<Fragments<'a>, InstallError> {
        let caller = parse_query(caller_query, "the caller subquery")?;
        let gate = parse_expr(CALLER_GATE, "the caller gate")?;
        let mut fragments = Fragments {
            policy,
            caller,
            gate,
            attributes: BTreeMap::new(),
            arrays: BTreeMap::new(),
        };
        // Attribute queries may use only `:user_id` (the policy loader checks), so they are
        // substituted against an empty attribute map.
        for (name, fragment) in &policy.subject.attributes {
            let mut query = (*fragment.ast).clone();
            fragments.substitute(&mut query, &format!("attribute `{name}`"))?;
            let what = format!("attribute `{name}` as an array");
            let mut array = parse_expr(ATTRIBUTE_ARRAY, &what)?;
            fill(&mut array, Filling::Query(Box::new(query.clone())), &what)?;
            fragments.arrays.insert(name.clone(), array);
            fragments.attributes.insert(name.clone(), query);
        }
        Ok(fragments)
    }

    pub(super) fn attribute(&self, name: &str, what: &str) -> Result<Query, InstallError> {
        self.attributes
            .get(name)
            .cloned()
            .ok_or_else(|| InstallError::UnknownPlaceholder {
                what: what.to_string(),
                name: name.to_string(),
            })
    }

    /// Replaces `:user_id` and `:<attribute>` in `node`, then checks none is left.
    pub(super) fn substitute<T: VisitMut + Visit>(
        &self,
        node: &mut T,
        what: &str,
    ) -> Result<(), InstallError> {
        let mut substitute = Substitute {
            fragments: self,
            unknown: None,
        };
        let _ = VisitMut::visit(node, &mut substitute);
        if let Some(name) = substitute.unknown {
            return Err(InstallError::UnknownPlaceholder {
                what: what.to_string(),
                name,
            });
        }
        if Visit::visit(&*node, &mut FindPlaceholder).is_break() {
            return Err(InstallError::PlaceholderLeft {
                what: what.to_string(),
            });
        }
        Ok(())
    }

    pub(super) fn substitute_expr(&self, expr: &Expr, what: &str) -> Result<Expr, InstallError> {
        let mut expr = expr.clone();
        self.substitute(&mut expr, what)?;
        Ok(expr)
    }

    /// `(SELECT rowgate.caller_id()) IS NOT NULL AND (<rule>)`: see [`CALLER_GATE`].
    pub(super) fn gated(&self, rule: Expr) -> Expr {
        Expr::BinaryOp {
            left: Box::new(self.gate.clone()),
            op: BinaryOperator::And,
            right: Box::new(Expr::Nested(Box::new(rule))),
        }
    }

    /// `caller_exists()`: the policy's `exists` query for the verified caller (TRUE for any
    /// validly signed caller when the policy has none). The function verifies the caller
    /// itself (see [`Verifier::Exists`]), raising when there is none, into a variable the query
    /// reads rather than calling `caller_id()` again. Should a table of the query have a
    /// column of a variable's name, PL/pgSQL refuses the ambiguity at run time: closed, not
    /// open.
    pub(super) fn caller_exists(&self) -> Result<String, InstallError> {
        let what = "function rowgate.caller_exists()";
        let check = match &self.policy.subject.exists {
            Some(fragment) => {
                let fragments =
                    Fragments::with_caller(self.policy, &format!("SELECT {VERIFIED_CALLER}"))?;
                let mut query = (*fragment.ast).clone();
                fragments.substitute(&mut query, "subject.exists")?;
                let exists = Expr::Exists {
                    subquery: Box::new(query),
                    negated: false,
                };
                printed_expr(&exists, what)?
            }
            None => "TRUE".to_string(),
        };
        Ok(identity_function_sql(Verifier::Exists { check: &check }))
    }

    /// `caller_attributes()`: `{"roles": [...], "tenant_id": [...]}`, for dry runs.
    pub(super) fn caller_attributes(&self) -> Result<String, InstallError> {
        let what = "function rowgate.caller_attributes()";
        let mut object = parse_expr("pg_catalog.jsonb_build_object()", what)?;
        let Expr::Function(function) = &mut object else {
            return Err(template(
                what,
                "jsonb_build_object() is not a function call",
            ));
        };
        let FunctionArguments::List(list) = &mut function.args else {
            return Err(template(what, "jsonb_build_object() has no argument list"));
        };
        for (name, query) in &self.attributes {
            let mut values = parse_expr(ATTRIBUTE_VALUES, what)?;
            fill(&mut values, Filling::Query(Box::new(query.clone())), what)?;
            let key = Expr::Value(Value::SingleQuotedString(name.clone()).into());
            for arg in [key, values] {
                list.args
                    .push(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)));
            }
        }
        let mut statement = parse_statement(ATTRIBUTES_TEMPLATE, what)?;
        fill(&mut statement, Filling::Expr(Box::new(object)), what)?;
        printed(&statement, what)
    }
}

/// The substitution, on the tree:
/// * `x IN (:attr)` → `x IN (<attr query>)`; with other items, `x IN (:attr, 'a')` →
///   `(x IN (<attr query>) OR x IN ('a'))` (AND for NOT IN);
/// * `x = ANY (:attr)` (or ALL) → `x = ANY (ARRAY(<attr query>))`;
/// * `:user_id` → `(SELECT rowgate.caller_id())`, any other `:attr` → `(<attr query>)`, scalar
///   subqueries (an attribute with several values then fails at run time: fail closed).
pub(super) struct Substitute<'f, 'p> {
    pub(super) fragments: &'f Fragments<'p>,
    pub(super) unknown: Option<String>,
}

pub(super) fn placeholder(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Placeholder(p) => Some(p.strip_prefix(':').unwrap_or(p)),
            _ => None,
        },
        _ => None,
    }
}

impl Substitute<'_, '_> {
    pub(super) fn attribute_of(&self, expr: &Expr) -> Option<&Query> {
        placeholder(expr).and_then(|name| self.fragments.attributes.get(name))
    }

    pub(super) fn in_list(&self, left: &Expr, list: &[Expr], negated: bool) -> Expr {
        let mut parts = Vec::new();
        let mut rest = Vec::new();
        for item in list {
            match self.attribute_of(item) {
                Some(query) => parts.push(Expr::InSubquery {
                    expr: Box::new(left.clone()),
                    subquery: Box::new(query.clone()),
                    negated,
                }),
                None => rest.push(item.clone()),
            }
        }
        if !rest.is_empty() {
            parts.push(Expr::InList {
                expr: Box::new(left.clone()),
                list: rest,
                negated,
            });
        }
        let op = if negated {
            BinaryOperator::And
        } else {
            BinaryOperator::Or
        };
        let several = parts.len() > 1;
        let combined = parts.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: op.clone(),
            right: Box::new(b),
        });
        match combined {
            Some(expr) if several => Expr::Nested(Box::new(expr)),
            Some(expr) => expr,
            // Unreachable: called only for a list holding an attribute.
            None => Expr::InList {
                expr: Box::new(left.clone()),
                list: list.to_vec(),
                negated,
            },
        }
    }

    pub(super) fn array_of(&self, expr: &Expr) -> Option<Box<Expr>> {
        placeholder(expr)
            .and_then(|name| self.fragments.arrays.get(name))
            .map(|array| Box::new(array.clone()))
    }
}

impl VisitorMut for Substitute<'_, '_> {
    type Break = ();

    // Pre-order, so `x IN (:attr)` is seen whole before its `:attr` would be visited alone.
    // The visitor then walks the replacement, which holds no placeholder.
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let replacement = match &*expr {
            Expr::InList {
                expr: left,
                list,
                negated,
            } if list.iter().any(|item| self.attribute_of(item).is_some()) => {
                Some(self.in_list(left, list, *negated))
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                is_some,
            } => self.array_of(right).map(|array| Expr::AnyOp {
                left: left.clone(),
                compare_op: compare_op.clone(),
                right: array,
                is_some: *is_some,
            }),
            Expr::AllOp {
                left,
                compare_op,
                right,
            } => self.array_of(right).map(|array| Expr::AllOp {
                left: left.clone(),
                compare_op: compare_op.clone(),
                right: array,
            }),
            other => match placeholder(other) {
                Some(USER_ID) => Some(Expr::Subquery(Box::new(self.fragments.caller.clone()))),
                Some(name) => match self.fragments.attributes.get(name) {
                    Some(query) => Some(Expr::Subquery(Box::new(query.clone()))),
                    None => {
                        self.unknown = Some(name.to_string());
                        return ControlFlow::Break(());
                    }
                },
                None => None,
            },
        };
        if let Some(replacement) = replacement {
            *expr = replacement;
        }
        ControlFlow::Continue(())
    }
}

/// Finds a placeholder anywhere, including positions that are not expressions.
pub(super) struct FindPlaceholder;

impl Visitor for FindPlaceholder {
    type Break = ();
    fn pre_visit_value(&mut self, value: &sqlparser::ast::ValueWithSpan) -> ControlFlow<()> {
        match value.value {
            Value::Placeholder(_) => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        }
    }
}

pub(super) enum Filling {
    /// Replaces the expression `:Hole`.
    Expr(Box<Expr>),
    /// Replaces the query `SELECT :Hole`.
    Query(Box<Query>),
}

pub(super) struct Fill {
    pub(super) filling: Option<Filling>,
    pub(super) filled: usize,
}

pub(super) fn is_hole(expr: &Expr) -> bool {
    placeholder(expr) == HOLE.strip_prefix(':')
}

pub(super) fn is_query_hole(query: &Query) -> bool {
    match query.body.as_ref() {
        SetExpr::Select(select) => {
            select.from.is_empty()
                && matches!(select.projection.as_slice(), [SelectItem::UnnamedExpr(e)] if is_hole(e))
        }
        _ => false,
    }
}

impl VisitorMut for Fill {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if is_query_hole(query) {
            if let Some(Filling::Query(filling)) = self.filling.take() {
                *query = *filling;
                self.filled += 1;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if is_hole(expr) {
            if let Some(Filling::Expr(filling)) = self.filling.take() {
                *expr = *filling;
                self.filled += 1;
            }
        }
        ControlFlow::Continue(())
    }
}

/// Fills the one hole of a template with a tree.
pub(super) fn fill<T: VisitMut + Visit>(
    node: &mut T,
    filling: Filling,
    what: &str,
) -> Result<(), InstallError> {
    let mut fill = Fill {
        filling: Some(filling),
        filled: 0,
    };
    let _ = VisitMut::visit(node, &mut fill);
    if fill.filled != 1 {
        return Err(template(what, "the template's hole was not found"));
    }
    if Visit::visit(&*node, &mut FindPlaceholder).is_break() {
        return Err(InstallError::PlaceholderLeft {
            what: what.to_string(),
        });
    }
    Ok(())
}

/// `CREATE VIEW rowgate.<name> WITH (security_barrier = true) AS SELECT [DISTINCT] <columns>
/// FROM <source> WHERE <filter>`, or without the barrier a plain view (its rows fenced by
/// row-level security instead, the filter only checking that they are).
#[allow(clippy::too_many_arguments)]
pub(super) fn view_sql(
    name: &str,
    source: &QualifiedName,
    columns: &[String],
    distinct: bool,
    barrier: bool,
    filter: Expr,
    what: &str,
) -> Result<String, InstallError> {
    let template_sql = if barrier {
        VIEW_TEMPLATE
    } else {
        PLAIN_VIEW_TEMPLATE
    };
    let mut statement = parse_statement(template_sql, what)?;
    let Statement::CreateView(view) = &mut statement else {
        return Err(template(what, "the view template is not CREATE VIEW"));
    };
    view.name = object_name(&[VIEW_SCHEMA, name]);
    let SetExpr::Select(select) = view.query.body.as_mut() else {
        return Err(template(what, "the view template's query is not a SELECT"));
    };
    select.projection = columns
        .iter()
        .map(|c| SelectItem::UnnamedExpr(Expr::Identifier(ident(c))))
        .collect();
    select.distinct = distinct.then_some(Distinct::Distinct);
    match select.from.as_mut_slice() {
        [from] => match &mut from.relation {
            TableFactor::Table { name, .. } => *name = object_name(&[&source.schema, &source.name]),
            _ => return Err(template(what, "the view template reads no table")),
        },
        _ => return Err(template(what, "the view template reads no table")),
    }
    fill(&mut statement, Filling::Expr(Box::new(filter)), what)?;
    printed(&statement, what)
}

/// The statement's text, after checking that it parses back to a tree that prints the same: a
/// printer bug must not turn a rule into a different one.
pub(super) fn printed(statement: &Statement, what: &str) -> Result<String, InstallError> {
    let sql = statement.to_string();
    let round_trip = |sql: &str| InstallError::RoundTrip {
        what: what.to_string(),
        sql: sql.to_string(),
    };
    let reparsed = Parser::parse_sql(&DIALECT, &sql).map_err(|_| round_trip(&sql))?;
    match reparsed.as_slice() {
        [again] if again.to_string() == sql => Ok(sql),
        _ => Err(round_trip(&sql)),
    }
}

/// The expression's text, checked the way [`printed`] checks a statement.
pub(super) fn printed_expr(expr: &Expr, what: &str) -> Result<String, InstallError> {
    let sql = expr.to_string();
    let round_trip = || InstallError::RoundTrip {
        what: what.to_string(),
        sql: sql.clone(),
    };
    let reparsed = Parser::new(&DIALECT)
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|_| round_trip())?;
    if reparsed.to_string() == sql {
        Ok(sql)
    } else {
        Err(round_trip())
    }
}

/// `$rowgate$<body>$rowgate$`, with a tag the body does not contain, so no policy text can end
/// the function body early.
pub(super) fn dollar_quoted(body: &str) -> String {
    let mut tag = "$rowgate$".to_string();
    let mut n = 0;
    while body.contains(&tag[..tag.len() - 1]) {
        n += 1;
        tag = format!("$rowgate{n}$");
    }
    format!("{tag}{body}{tag}")
}

pub(super) fn template(what: &str, message: &str) -> InstallError {
    InstallError::Template {
        what: what.to_string(),
        message: message.to_string(),
    }
}

pub(super) fn parse_statement(sql: &str, what: &str) -> Result<Statement, InstallError> {
    let statements =
        Parser::parse_sql(&DIALECT, sql).map_err(|e| template(what, &e.to_string()))?;
    match <[Statement; 1]>::try_from(statements) {
        Ok([statement]) => Ok(statement),
        Err(_) => Err(template(what, "the template is not one statement")),
    }
}

pub(super) fn parse_query(sql: &str, what: &str) -> Result<Query, InstallError> {
    match parse_statement(sql, what)? {
        Statement::Query(query) => Ok(*query),
        _ => Err(template(what, "the template is not a query")),
    }
}

pub(super) fn parse_expr(sql: &str, what: &str) -> Result<Expr, InstallError> {
    Parser::new(&DIALECT)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|e| template(what, &e.to_string()))
}
