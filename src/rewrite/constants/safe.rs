//! Column-free expressions that cannot raise, so the fence leaves them as they are: literals,
//! and the current date or time cast, truncated or moved by bounded literal intervals (which
//! keeps "the last 30 days" an index condition).

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    UnaryOperator, Value,
};

use super::last_name;

/// Literals, and the current date and time in forms that cannot raise (see the module doc).
pub(super) fn cannot_raise(expr: &Expr) -> bool {
    literal(expr) || now(expr)
}

fn literal(expr: &Expr) -> bool {
    match expr {
        Expr::Value(_) | Expr::TypedString(_) => true,
        Expr::Interval(interval) => matches!(interval.value.as_ref(), Expr::Value(_)),
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => matches!(expr.as_ref(), Expr::Value(_)),
        Expr::Nested(inner) => literal(inner),
        Expr::Array(array) => array.elem.iter().all(literal),
        // A cast of a quoted literal is a constant from the moment PostgreSQL parses it (the
        // type's input function runs then). A cast of a number is a call, which may run only
        // when the query does (`99999999999999999999.5::money` overflowed on a hidden row;
        // found in review).
        Expr::Cast { expr, .. } => matches!(expr.as_ref(),
            Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_))),
        _ => false,
    }
}

/// How far, in all, literal moves of the current date or time may go and stay unwrapped: far
/// inside the dates PostgreSQL holds (4713 BC to 294276 AD), and far beyond any question.
const MAX_YEARS: f64 = 3000.0;

/// The current date or time, cast, truncated, and moved by literal intervals and day counts
/// that add up to at most [`MAX_YEARS`]: within the dates PostgreSQL holds (from 4713 BC),
/// however they are nested.
fn now(expr: &Expr) -> bool {
    moved_years(expr).is_some_and(|years| years <= MAX_YEARS)
}

/// How many years in all the literal moves of `expr` add up to (each counted as a move away
/// from now, whatever its sign); `None` if `expr` is not the current date or time so moved.
fn moved_years(expr: &Expr) -> Option<f64> {
    match expr {
        Expr::Nested(inner) => moved_years(inner),
        Expr::Function(f) => {
            let name = last_name(f).unwrap_or_default();
            match (&f.args, name.as_str()) {
                (
                    FunctionArguments::None,
                    "current_date" | "current_timestamp" | "current_time" | "localtime"
                    | "localtimestamp",
                ) => Some(0.0),
                (
                    FunctionArguments::List(list),
                    "now" | "transaction_timestamp" | "statement_timestamp",
                ) if list.args.is_empty() => Some(0.0),
                (FunctionArguments::List(list), "date_trunc") => match list.args.as_slice() {
                    [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(unit))), FunctionArg::Unnamed(FunctionArgExpr::Expr(inner))]
                        if truncation_unit(&unit.value) =>
                    {
                        moved_years(inner)
                    }
                    _ => None,
                },
                _ => None,
            }
        }
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type: DataType::Date | DataType::Timestamp(..),
            ..
        } => moved_years(expr),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Plus | BinaryOperator::Minus,
            right,
        } => Some(moved_years(left)? + interval_years(right).or_else(|| day_count_years(right))?),
        _ => None,
    }
}

fn truncation_unit(value: &Value) -> bool {
    let Value::SingleQuotedString(unit) = value else {
        return false;
    };
    matches!(
        unit.to_ascii_lowercase().as_str(),
        "microseconds"
            | "milliseconds"
            | "second"
            | "minute"
            | "hour"
            | "day"
            | "week"
            | "month"
            | "quarter"
            | "year"
            | "decade"
            | "century"
            | "millennium"
    )
}

/// `current_date - 30`: the years of a literal day count.
fn day_count_years(expr: &Expr) -> Option<f64> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse::<i64>()
                .ok()
                .map(|days| days.unsigned_abs() as f64 / 365.0),
            _ => None,
        },
        _ => None,
    }
}

/// The years of `INTERVAL '30 days'`, `INTERVAL '1' YEAR` or `'2 hours'::interval`: up to six
/// `<count> <unit>` pairs of whole numbers, added up. Any other form (`@`, ISO 8601, fractions,
/// `ago`) is not read, so its expression is wrapped.
fn interval_years(expr: &Expr) -> Option<f64> {
    let quoted = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(text) => Some(text.clone()),
            _ => None,
        },
        _ => None,
    };
    let (text, field) = match expr {
        Expr::Interval(interval) => (quoted(&interval.value)?, interval.leading_field.clone()),
        Expr::Cast {
            expr,
            data_type: DataType::Interval { .. },
            ..
        } => (quoted(expr)?, None),
        _ => return None,
    };
    if let Some(field) = field {
        let count = text.trim().parse::<i64>().ok()?;
        return years(count, &field.to_string().to_ascii_lowercase());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || words.len() > 12 {
        return None;
    }
    words.chunks(2).try_fold(0.0, |total, pair| match pair {
        [count, unit] => Some(total + years(count.parse().ok()?, &unit.to_ascii_lowercase())?),
        _ => None,
    })
}

fn years(count: i64, unit: &str) -> Option<f64> {
    let per_year: f64 = match unit.trim_end_matches('s') {
        "year" | "yr" | "y" => 1.0,
        "month" | "mon" => 12.0,
        "week" | "w" => 52.0,
        "day" | "d" => 365.0,
        "hour" | "hr" | "h" => 365.0 * 24.0,
        "minute" | "min" | "m" => 365.0 * 24.0 * 60.0,
        "second" | "sec" => 365.0 * 24.0 * 3600.0,
        _ => return None,
    };
    Some(count.unsigned_abs() as f64 / per_year)
}
