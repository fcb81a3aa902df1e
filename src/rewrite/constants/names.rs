//! The name PostgreSQL gives an unnamed select-list item (its `FigureColname`), so that a
//! wrapped output can keep it.

use sqlparser::ast::{DataType, Expr, SelectItem, SetExpr, TimezoneInfo, TrimWhereField};

use super::last_name;
use crate::sql::fold;

/// The name PostgreSQL gives an unnamed select-list item (its `FigureColname`), for the forms
/// a wrap can change; `None` where this does not know it.
pub(super) fn column_name(expr: &Expr) -> Option<String> {
    match figure(expr)? {
        (name, strength) if strength > 0 => Some(name),
        _ => Some("?column?".into()),
    }
}

/// (name, strength): 2 for a name taken from the expression, 1 for a type name or `case`, 0
/// for none, as in PostgreSQL's `FigureColnameInternal`.
fn figure(expr: &Expr) -> Option<(String, u8)> {
    let named = |name: &str| Some((name.to_string(), 2));
    match expr {
        Expr::Identifier(i) => Some((fold(i), 2)),
        Expr::CompoundIdentifier(parts) => Some((fold(parts.last()?), 2)),
        Expr::Function(f) => Some((last_name(f)?, 2)),
        Expr::Nested(inner) => figure(inner),
        Expr::Cast {
            expr, data_type, ..
        } => match figure(expr)? {
            (name, 2) => Some((name, 2)),
            _ => Some((type_name(data_type)?, 1)),
        },
        Expr::Case { else_result, .. } => match else_result.as_deref().map(figure) {
            Some(Some((name, 2))) => Some((name, 2)),
            Some(None) => None,
            _ => Some(("case".into(), 1)),
        },
        Expr::Collate { expr, .. } => figure(expr),
        Expr::Trim { trim_where, .. } => named(match trim_where {
            Some(TrimWhereField::Leading) => "ltrim",
            Some(TrimWhereField::Trailing) => "rtrim",
            _ => "btrim",
        }),
        Expr::Substring { shorthand, .. } => named(if *shorthand { "substr" } else { "substring" }),
        Expr::Subquery(query) => match query.body.as_ref() {
            SetExpr::Select(select) => match select.projection.first()? {
                SelectItem::ExprWithAlias { alias, .. } => Some((fold(alias), 2)),
                SelectItem::UnnamedExpr(expr) => figure(expr),
                _ => None,
            },
            _ => None,
        },
        Expr::Exists { .. } => named("exists"),
        Expr::Array(_) => named("array"),
        Expr::Tuple(_) => named("row"),
        Expr::Extract { .. } => named("extract"),
        Expr::Position { .. } => named("position"),
        Expr::Overlay { .. } => named("overlay"),
        Expr::Ceil { .. } => named("ceil"),
        Expr::Floor { .. } => named("floor"),
        Expr::AtTimeZone { .. } => named("timezone"),
        Expr::Interval(_) => Some(("interval".into(), 1)),
        Expr::Value(_)
        | Expr::BinaryOp { .. }
        | Expr::UnaryOp { .. }
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::InList { .. } => Some((String::new(), 0)),
        _ => None,
    }
}

/// The last name of a cast's type as PostgreSQL's grammar writes it (`int` is `int4`).
fn type_name(data_type: &DataType) -> Option<String> {
    let name = match data_type {
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => "int4",
        DataType::BigInt(_) | DataType::Int8(_) => "int8",
        DataType::SmallInt(_) | DataType::Int2(_) => "int2",
        DataType::Real | DataType::Float4 => "float4",
        DataType::DoublePrecision | DataType::Float8 | DataType::Float(_) => "float8",
        DataType::Numeric(_) | DataType::Decimal(_) | DataType::Dec(_) => "numeric",
        DataType::Boolean | DataType::Bool => "bool",
        DataType::Text => "text",
        DataType::Varchar(_) | DataType::CharacterVarying(_) => "varchar",
        DataType::Char(_) | DataType::Character(_) => "bpchar",
        DataType::Date => "date",
        DataType::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timestamptz",
        DataType::Timestamp(..) => "timestamp",
        DataType::Time(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => "timetz",
        DataType::Time(..) => "time",
        DataType::JSON => "json",
        DataType::JSONB => "jsonb",
        DataType::Uuid => "uuid",
        DataType::Bytea => "bytea",
        DataType::Interval { .. } => "interval",
        DataType::Custom(name, _) => return name.0.last()?.as_ident().map(fold),
        _ => return None,
    };
    Some(name.into())
}
