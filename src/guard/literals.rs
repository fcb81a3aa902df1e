//! Literals and types: which literal forms and which type names a query may write. A literal
//! must print back to the text PostgreSQL reads, and a type must not look names up in the
//! catalog.

use std::ops::ControlFlow;

use sqlparser::ast::{DataType, Value};

use super::{refuse, unsupported, Flow, GuardError};
use crate::sql::fold;

pub(super) fn check_value(value: &Value) -> Flow {
    match value {
        Value::Number(..)
        | Value::SingleQuotedString(_)
        | Value::EscapedStringLiteral(_)
        | Value::DollarQuotedString(_)
        | Value::Boolean(_)
        | Value::Null => ControlFlow::Continue(()),
        Value::Placeholder(p) => refuse(GuardError::Clause {
            clause: "a query parameter",
            hint: if p.starts_with('$') {
                "Write the value into the query as a literal; rowgate takes no parameters."
            } else {
                "Write the value into the query as a literal; `:name` placeholders are not supported."
            },
        }),
        _ => unsupported("that kind of literal (write 'text', E'text' or a number)"),
    }
}

/// Built-in types sqlparser does not know by name (it reads them as custom types), and the
/// vector types of pgvector: the only custom type names a cast may use. A table's row type
/// (`'(...)'::customers`) is a reference to that table, and other types (`record`, `tid`, the
/// pseudo-types) are not needed for analytics. Sorted for binary search.
const CUSTOM_TYPES: &[&str] = &[
    "\"char\"",
    "bool",
    "box",
    "bpchar",
    "cidr",
    "circle",
    "citext",
    "date",
    "daterange",
    "float4",
    "float8",
    "halfvec",
    "inet",
    "int2",
    "int4",
    "int4range",
    "int8",
    "int8range",
    "interval",
    "json",
    "jsonb",
    "jsonpath",
    "line",
    "lseg",
    "macaddr",
    "macaddr8",
    "money",
    "name",
    "numeric",
    "numrange",
    "path",
    "point",
    "polygon",
    "sparsevec",
    "text",
    "timestamp",
    "timestamptz",
    "tsrange",
    "tstzrange",
    "uuid",
    "varchar",
    "vector",
    "xml",
];

/// The types a cast or typed literal (`regclass 'x'`) may name. Object-identifier types look
/// names up in the catalog (`'pg_shadow'::regclass`), which tells an agent what exists outside
/// its policy; custom names are allowed only from [`CUSTOM_TYPES`].
pub(super) fn check_type(data_type: &DataType) -> Flow {
    let catalog = || {
        refuse(GuardError::Clause {
            clause: "a cast to a catalog type (regclass, regproc, oid, ...)",
            hint: "Cast to text, integer, numeric, date or timestamp instead.",
        })
    };
    let name = match data_type {
        DataType::Regclass => return catalog(),
        DataType::Custom(name, _) => name,
        DataType::Array(sqlparser::ast::ArrayElemTypeDef::AngleBracket(inner))
        | DataType::Array(sqlparser::ast::ArrayElemTypeDef::SquareBracket(inner, _))
        | DataType::Array(sqlparser::ast::ArrayElemTypeDef::Parenthesis(inner)) => {
            return check_type(inner)
        }
        _ => return ControlFlow::Continue(()),
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            // Keep the quotes of `"char"`, a different type from `char`.
            Some(ident) if ident.quote_style.is_some() && ident.value == "char" => {
                "\"char\"".to_string()
            }
            Some(ident) => fold(ident),
            None => String::new(),
        })
        .collect();
    let base = match parts.as_slice() {
        [base] => base,
        [schema, base] if schema == "pg_catalog" => base,
        _ => "",
    };
    if base.starts_with("reg") || matches!(base, "oid" | "xid" | "xid8" | "cid" | "tid") {
        return catalog();
    }
    if base.is_empty() || CUSTOM_TYPES.binary_search(&base).is_err() {
        return refuse(GuardError::Type {
            name: parts.join("."),
        });
    }
    ControlFlow::Continue(())
}

/// Whether sqlparser prints `text` between `quote`s so that PostgreSQL reads `text` back. Its
/// printer doubles a quote only when it guesses the quote is not already escaped: a quote right
/// after a backslash, or two quotes in a row, are written as they are, and PostgreSQL (with
/// `standard_conforming_strings`, which the gateway pins) then reads a different literal, or
/// ends it early and reads the rest as SQL.
pub(super) fn prints_back(text: &str, quote: char) -> bool {
    let doubled: String = [quote, quote].iter().collect();
    !text.contains(&format!("\\{quote}")) && !text.contains(&doubled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_types_are_sorted_for_binary_search() {
        let mut sorted = CUSTOM_TYPES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, CUSTOM_TYPES);
    }
}
