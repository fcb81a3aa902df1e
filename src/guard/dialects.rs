//! Functions of other SQL dialects that PostgreSQL does not have (MySQL's `year`, SQLite's
//! `strftime`, SQL Server's `len`, names models invent such as `divide`), each with the
//! PostgreSQL expression that does the same job.
//!
//! Language models learn SQL from every dialect at once: in the BIRD corpus, 194 of the nine
//! models' 654 refusals were calls of functions PostgreSQL does not have (CORPUS.md). They are
//! refused as before, since the allowlist never holds them; what this table adds is the fix, in
//! the refusal's hint, so that the agent's next try is PostgreSQL.
//!
//! Every entry is checked by tests: its call is refused with its own hint, its replacement
//! passes the guard, PostgreSQL has no function of that name, and the replacement runs on
//! PostgreSQL over the example columns below (`tests/dialect_hints.rs`).

/// The example columns the entries are written over, as `tests/dialect_hints.rs` defines them:
/// `d`, `e` dates (`e` the later), `ts` a timestamp, `s` text, `a`, `b` integers.
pub const EXAMPLE_COLUMNS: &str = "d, e, ts, s, a, b";

/// A function from another dialect, and how to write it in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Foreign {
    /// The name as PostgreSQL folds it.
    pub name: &'static str,
    /// Whose function it is, for the message; `None` for names no dialect has.
    pub from: Option<&'static str>,
    /// A call as an agent writes it.
    pub call: &'static str,
    /// The same in PostgreSQL.
    pub instead: &'static str,
    /// What the replacement differs in, if anything.
    pub note: Option<&'static str>,
}

impl Foreign {
    /// The refusal's hint: the call, and what to write instead.
    pub fn hint(&self) -> String {
        let note = self.note.map(|n| format!(" ({n})")).unwrap_or_default();
        format!(
            "PostgreSQL has no `{}` function: instead of `{}`, write `{}`{note}.",
            self.name, self.call, self.instead
        )
    }
}

const MYSQL: Option<&str> = Some("MySQL");
const SQLITE: Option<&str> = Some("SQLite");
const SQL_SERVER: Option<&str> = Some("SQL Server");
const ORACLE: Option<&str> = Some("Oracle");
const MYSQL_SQLITE: Option<&str> = Some("MySQL and SQLite");
const MYSQL_SQL_SERVER: Option<&str> = Some("MySQL and SQL Server");

const fn entry(
    name: &'static str,
    from: Option<&'static str>,
    call: &'static str,
    instead: &'static str,
) -> Foreign {
    Foreign {
        name,
        from,
        call,
        instead,
        note: None,
    }
}

const fn noted(
    name: &'static str,
    from: Option<&'static str>,
    call: &'static str,
    instead: &'static str,
    note: &'static str,
) -> Foreign {
    Foreign {
        note: Some(note),
        ..entry(name, from, call, instead)
    }
}

/// Sorted by name (checked by a test) for binary search.
pub const FOREIGN: &[Foreign] = &[
    entry(
        "charindex",
        SQL_SERVER,
        "charindex('x', s)",
        "strpos(s, 'x')",
    ),
    entry("curdate", MYSQL, "curdate()", "CURRENT_DATE"),
    entry(
        "date_add",
        MYSQL,
        "date_add(d, INTERVAL 1 DAY)",
        "d + INTERVAL '1 day'",
    ),
    entry(
        "date_format",
        MYSQL,
        "date_format(d, '%Y-%m')",
        "to_char(d, 'YYYY-MM')",
    ),
    entry(
        "date_sub",
        MYSQL,
        "date_sub(d, INTERVAL 1 DAY)",
        "d - INTERVAL '1 day'",
    ),
    entry(
        "dateadd",
        SQL_SERVER,
        "dateadd(day, 1, d)",
        "d + INTERVAL '1 day'",
    ),
    noted(
        "datediff",
        MYSQL_SQL_SERVER,
        "datediff(e, d)",
        "e - d",
        "days between two dates; between timestamps, EXTRACT(EPOCH FROM ts2 - ts) gives seconds",
    ),
    entry(
        "datepart",
        SQL_SERVER,
        "datepart(year, d)",
        "EXTRACT(YEAR FROM d)",
    ),
    entry("day", MYSQL_SQL_SERVER, "day(d)", "EXTRACT(DAY FROM d)"),
    entry("dayname", MYSQL, "dayname(d)", "to_char(d, 'FMDay')"),
    entry("dayofmonth", MYSQL, "dayofmonth(d)", "EXTRACT(DAY FROM d)"),
    noted(
        "dayofweek",
        MYSQL,
        "dayofweek(d)",
        "EXTRACT(DOW FROM d) + 1",
        "EXTRACT(DOW ...) alone counts from 0 for Sunday",
    ),
    entry("dayofyear", MYSQL, "dayofyear(d)", "EXTRACT(DOY FROM d)"),
    noted(
        "divide",
        None,
        "divide(a, b)",
        "a::numeric / b",
        "without the cast, integer division drops the fraction",
    ),
    entry(
        "from_unixtime",
        MYSQL,
        "from_unixtime(a)",
        "to_timestamp(a)",
    ),
    entry("getdate", SQL_SERVER, "getdate()", "now()"),
    entry(
        "group_concat",
        MYSQL_SQLITE,
        "group_concat(s)",
        "string_agg(s, ',')",
    ),
    entry("hour", MYSQL, "hour(ts)", "EXTRACT(HOUR FROM ts)"),
    entry("ifnull", MYSQL_SQLITE, "ifnull(s, 'x')", "coalesce(s, 'x')"),
    entry(
        "iif",
        Some("SQL Server and SQLite"),
        "iif(a > b, s, 'x')",
        "CASE WHEN a > b THEN s ELSE 'x' END",
    ),
    entry(
        "instr",
        Some("MySQL, SQLite and Oracle"),
        "instr(s, 'x')",
        "strpos(s, 'x')",
    ),
    entry("julianday", SQLITE, "julianday(e) - julianday(d)", "e - d"),
    entry(
        "last_day",
        Some("MySQL and Oracle"),
        "last_day(d)",
        "(date_trunc('month', d) + INTERVAL '1 month - 1 day')::date",
    ),
    entry("lcase", MYSQL, "lcase(s)", "lower(s)"),
    entry("len", SQL_SERVER, "len(s)", "length(s)"),
    entry("listagg", ORACLE, "listagg(s, ',')", "string_agg(s, ',')"),
    entry("locate", MYSQL, "locate('x', s)", "strpos(s, 'x')"),
    entry(
        "median",
        ORACLE,
        "median(a)",
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY a)",
    ),
    entry("mid", MYSQL, "mid(s, 2, 3)", "substring(s FROM 2 FOR 3)"),
    entry("minute", MYSQL, "minute(ts)", "EXTRACT(MINUTE FROM ts)"),
    entry(
        "month",
        MYSQL_SQL_SERVER,
        "month(d)",
        "EXTRACT(MONTH FROM d)",
    ),
    entry("monthname", MYSQL, "monthname(d)", "to_char(d, 'FMMonth')"),
    entry("multiply", None, "multiply(a, b)", "a * b"),
    entry("nvl", ORACLE, "nvl(s, 'x')", "coalesce(s, 'x')"),
    entry("quarter", MYSQL, "quarter(d)", "EXTRACT(QUARTER FROM d)"),
    entry("rand", MYSQL_SQL_SERVER, "rand()", "random()"),
    entry("second", MYSQL, "second(ts)", "EXTRACT(SECOND FROM ts)"),
    entry(
        "str_to_date",
        MYSQL,
        "str_to_date('2024-03-05', '%Y-%m-%d')",
        "to_date('2024-03-05', 'YYYY-MM-DD')",
    ),
    noted(
        "strftime",
        SQLITE,
        "strftime('%Y', d)",
        "to_char(d, 'YYYY')",
        "or EXTRACT(YEAR FROM d) for a number; cast a text column first, as in s::date",
    ),
    entry(
        "substring_index",
        MYSQL,
        "substring_index(s, ',', 1)",
        "split_part(s, ',', 1)",
    ),
    entry("subtract", None, "subtract(a, b)", "a - b"),
    entry("sysdate", Some("Oracle and MySQL"), "sysdate()", "now()"),
    entry("truncate", MYSQL, "truncate(a, 2)", "trunc(a, 2)"),
    entry("ucase", MYSQL, "ucase(s)", "upper(s)"),
    entry(
        "unix_timestamp",
        MYSQL,
        "unix_timestamp(ts)",
        "EXTRACT(EPOCH FROM ts)",
    ),
    noted(
        "weekday",
        MYSQL,
        "weekday(d)",
        "EXTRACT(ISODOW FROM d) - 1",
        "EXTRACT(ISODOW ...) alone counts from 1 for Monday",
    ),
    entry("year", MYSQL_SQL_SERVER, "year(d)", "EXTRACT(YEAR FROM d)"),
];

/// The other dialects' function `name` (folded), if it is one.
pub fn foreign(name: &str) -> Option<&'static Foreign> {
    FOREIGN
        .binary_search_by(|f| f.name.cmp(name))
        .ok()
        .map(|i| &FOREIGN[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::{builtin, never_allowed};

    #[test]
    fn sorted_unique_and_never_an_allowed_or_denied_name() {
        let names: Vec<&str> = FOREIGN.iter().map(|f| f.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, names);
        for name in names {
            assert!(!builtin(name), "{name} is on the allowlist");
            assert!(never_allowed(name).is_none(), "{name} is never allowed");
            assert_eq!(foreign(name).map(|f| f.name), Some(name));
        }
        assert_eq!(foreign("sum"), None);
    }

    #[test]
    fn every_call_names_its_function() {
        for f in FOREIGN {
            assert!(
                f.call.starts_with(&format!("{}(", f.name)),
                "{}: {}",
                f.name,
                f.call
            );
        }
    }
}
