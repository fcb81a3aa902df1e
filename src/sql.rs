//! Small shared facts about PostgreSQL's SQL that several stages need: identifier folding,
//! the reserved keywords, and building identifiers that print safely.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};
use sqlparser::dialect::PostgreSqlDialect;

pub const DIALECT: PostgreSqlDialect = PostgreSqlDialect {};

/// The name PostgreSQL looks up for an identifier: unquoted folds to lower case, quoted is kept.
///
/// PostgreSQL (on a UTF-8 database) folds ASCII letters only: `\u{212A}` (KELVIN SIGN) stays
/// what it is, although Unicode lower-cases it to `k`. Folding more than PostgreSQL does would
/// let a name the agent wrote look like a policy table (or an agent CTE) that it is not.
pub fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

/// The folded parts of a dotted name, or `None` when a part is not a plain identifier.
pub fn fold_name(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => Some(fold(ident)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// PostgreSQL's reserved and type/function-name keywords (Appendix C of its manual): an unquoted
/// word from this list never names a table or column in PostgreSQL. If sqlparser accepted one as
/// a name, the two parsers disagree (`FROM ONLY invoices` is the known case), so we refuse it.
pub const PG_RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

pub fn is_reserved(word: &str) -> bool {
    PG_RESERVED.binary_search(&word).is_ok()
}

/// An unquoted identifier that PostgreSQL would fold back to exactly `name`.
fn prints_bare(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !is_reserved(name)
}

/// An identifier for `name` (already folded) that PostgreSQL reads back as `name`.
pub fn ident(name: &str) -> Ident {
    if prints_bare(name) {
        Ident::new(name)
    } else {
        Ident::with_quote('"', name)
    }
}

pub fn object_name(parts: &[&str]) -> ObjectName {
    ObjectName(
        parts
            .iter()
            .map(|p| ObjectNamePart::Identifier(ident(p)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_list_is_sorted_for_binary_search() {
        let mut sorted = PG_RESERVED.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, PG_RESERVED);
    }

    #[test]
    fn idents_quote_only_when_needed() {
        assert_eq!(ident("invoices").to_string(), "invoices");
        assert_eq!(ident("Invoices").to_string(), "\"Invoices\"");
        assert_eq!(ident("only").to_string(), "\"only\"");
        assert!(is_reserved("only") && !is_reserved("invoices"));
    }

    #[test]
    fn folding_is_ascii_only_like_postgresql() {
        assert_eq!(fold(&Ident::new("InVoIcEs")), "invoices");
        assert_eq!(fold(&Ident::new("bloc\u{212A}s")), "bloc\u{212A}s");
        assert_eq!(fold(&Ident::new("\u{c9}T\u{c9}")), "\u{c9}t\u{c9}");
        assert_eq!(fold(&Ident::with_quote('"', "Invoices")), "Invoices");
    }
}
