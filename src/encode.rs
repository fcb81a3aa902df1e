//! Stage 8, encode: PostgreSQL values to JSON.
//!
//! This module owns the answer's `columns` and `rows`: the name and type of each result column,
//! and every value of a row as JSON. It reads the **binary** wire format (tokio-postgres always
//! asks for binary results) and decodes each type itself from the raw bytes, so that nothing is
//! rounded or reformatted on the way: an agent sees the value PostgreSQL holds.
//!
//! Choices that are part of the HTTP contract:
//!
//! * **Key order is column order.** The crate's `serde_json` has no `preserve_order` feature, so
//!   a `serde_json::Map` would sort the keys. A row is therefore an [`EncodedRow`]: the
//!   `(key, value)` pairs in column order, which serializes as a JSON object in that order.
//!   Serialize it directly; converting it to a `serde_json::Value` first would sort the keys.
//! * **Duplicate column names keep every value.** `SELECT 1 AS n, 2 AS n` gives the keys `n` and
//!   `n_2`. The first column of a name keeps it; each further one gets the smallest `_2`, `_3`, …
//!   suffix that no column of the result already uses, so a column the agent named `n_2` itself
//!   keeps its name. [`columns`] reports the same keys, so `columns[i].name` is the key of the
//!   `i`-th value of every row.
//! * **Numbers.** `int2`, `int4`, `int8`, `oid` are JSON numbers, exact (serde_json writes any
//!   `i64` exactly, even beyond 2^53; a JavaScript client may still round those). `float4` and
//!   `float8` are numbers written in their shortest exact form (`0.1::float4` is `0.1`), and NaN
//!   and infinities, which JSON cannot express, are the strings `"NaN"`, `"Infinity"`,
//!   `"-Infinity"`.
//! * **`numeric` is a string**, its exact decimal text with its display scale (`"1234.50"`),
//!   because JSON parsers read numbers as doubles and would round `numeric` values silently.
//!   NaN and infinities are `"NaN"`, `"Infinity"`, `"-Infinity"`.
//! * **Dates and times are ISO 8601 strings**: `date` `"2024-02-29"`, `time` `"12:34:56.789"`,
//!   `timetz` `"12:34:56+05:30"`, `timestamp` `"2024-01-02T03:04:05.678901"`, `timestamptz` in UTC
//!   with `Z`: `"2024-01-02T01:04:05Z"`. Fractional seconds have no trailing zeros. Infinite dates
//!   and timestamps are `"infinity"` and `"-infinity"`. Years before 1 AD use ISO 8601's
//!   astronomical numbering (1 BC is `0000`, 2 BC is `-000001`) and years outside 0000–9999 are
//!   written with a sign and at least six digits (`"+010000-01-01"`), the form JavaScript's
//!   `Date` also reads.
//! * **`interval` is an ISO 8601 duration exactly as PostgreSQL writes it with
//!   `IntervalStyle = iso_8601`**: `"P1Y2M3DT4H5M6.5S"`, `"PT0S"` for zero, and a sign on each
//!   negative part (`"P-1DT2H"`), since PostgreSQL keeps months, days and time apart.
//! * `json` and `jsonb` are embedded JSON values, not strings. (So SQL `NULL` and JSON `null`
//!   both come out as `null`. Numbers inside JSON documents that do not fit an `i64`/`u64` are
//!   read as doubles by serde_json.) `bytea` is PostgreSQL's hex text, `"\\xdeadbeef"`. `uuid`
//!   is its lowercase hyphenated text. `inet`, `cidr`, `macaddr`, `macaddr8` are their PostgreSQL
//!   text.
//! * Text types (`text`, `varchar`, `bpchar` with its padding, `name`, `"char"`, `xml`,
//!   `jsonpath`, `citext`), enum values and domains over any supported type are strings or their
//!   base type's JSON (PostgreSQL reports a domain column with its base type anyway).
//! * Arrays are JSON arrays, `NULL` elements are `null`, and multi-dimensional arrays nest
//!   (`ARRAY[[1,2],[3,4]]` is `[[1,2],[3,4]]`; lower bounds other than 1 are not kept).
//! * Any other type (`money`, `point`, `tsvector`, ranges, composites, `bit`, extension types…)
//!   is refused with [`EncodeError::Unsupported`], whose message tells the agent to cast the
//!   column to text in its query. Guessing at a binary layout could return a wrong value, which
//!   is worse than a refusal the agent can fix in one step.

use std::collections::HashSet;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use tokio_postgres::types::{FromSql, Kind, Type};
use tokio_postgres::{Column, Row};

use crate::refusal::{ErrorCode, Refusal};

mod decode;
mod numbers;
mod scalars;
#[cfg(test)]
mod tests;
mod time;

use decode::decode;
pub use numbers::Numeric;

/// Why a value could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The column's type has no JSON encoding here; the agent can cast it to text.
    #[error(
        "column \"{column}\" has type {ty}, which rowgate cannot return as JSON; {hint}",
        ty = .r#type,
        hint = cast_hint(.column)
    )]
    Unsupported { column: String, r#type: String },
    /// The bytes PostgreSQL sent do not have the layout of their type. A server never does this;
    /// the variant exists so that a surprise is an error and not a wrong value.
    #[error("column \"{column}\" (type {ty}) holds a value rowgate could not decode: {reason}", ty = .r#type)]
    Malformed {
        column: String,
        r#type: String,
        reason: String,
    },
}

impl Refusal for EncodeError {
    fn code(&self) -> ErrorCode {
        // The query ran, but its result cannot be answered as is: like a query PostgreSQL refused,
        // it is the agent's query that has to change.
        ErrorCode::QueryFailed
    }

    fn hint(&self) -> String {
        match self {
            EncodeError::Unsupported { column, .. } => cast_hint(column),
            EncodeError::Malformed { column, .. } => cast_hint(column),
        }
    }
}

/// "cast it to text in the query, e.g. SELECT col::text", spelled so that the agent can paste it.
fn cast_hint(column: &str) -> String {
    let expr = if column == "?column?" {
        // PostgreSQL's name for an unnamed expression: there is no name to repeat.
        "(expression)".to_owned()
    } else if is_plain_identifier(column) {
        column.to_owned()
    } else {
        format!("\"{}\"", column.replace('"', "\"\""))
    };
    format!("cast it to text in the query, e.g. SELECT {expr}::text")
}

fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

/// One result column as the answer describes it: `{"name": ..., "type": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ColumnInfo {
    /// The key of this column's values in every row (a duplicate name gets a suffix).
    pub name: String,
    /// PostgreSQL's name of the type (`int4`, `numeric`, `timestamptz`, `mood`), arrays as
    /// `int4[]`.
    #[serde(rename = "type")]
    pub r#type: String,
}

/// The columns of a result, named by the same keys [`encode_row`] uses.
pub fn columns(cols: &[Column]) -> Vec<ColumnInfo> {
    unique_keys(cols)
        .into_iter()
        .zip(cols)
        .map(|(name, col)| ColumnInfo {
            name,
            r#type: type_name(col.type_()),
        })
        .collect()
}

/// PostgreSQL's name of a type, with arrays written `elem[]` rather than the catalog's `_elem`.
pub fn type_name(ty: &Type) -> String {
    match ty.kind() {
        Kind::Array(member) => format!("{}[]", member.name()),
        _ => ty.name().to_owned(),
    }
}

/// The keys of a result's columns: the column names, duplicates suffixed (see the module doc).
fn unique_keys(cols: &[Column]) -> Vec<String> {
    // Suffixes avoid every name of the result, not only the names seen so far, so that a later
    // column that is literally called `n_2` is not renamed because of an earlier duplicate `n`.
    let names: HashSet<&str> = cols.iter().map(Column::name).collect();
    let mut taken: HashSet<String> = HashSet::with_capacity(cols.len());
    let mut keys = Vec::with_capacity(cols.len());
    for col in cols {
        let name = col.name();
        let key = if taken.contains(name) {
            let mut n = 2u64;
            loop {
                let candidate = format!("{name}_{n}");
                if !names.contains(candidate.as_str()) && !taken.contains(&candidate) {
                    break candidate;
                }
                n += 1;
            }
        } else {
            name.to_owned()
        };
        taken.insert(key.clone());
        keys.push(key);
    }
    keys
}

/// One row as JSON: its `(key, value)` pairs in column order.
///
/// It serializes as a JSON object whose keys are in column order. Keep it that way to the wire:
/// `serde_json::to_value` would turn it into a `Value::Object`, whose keys are sorted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EncodedRow(Vec<(String, Value)>);

impl EncodedRow {
    /// The pairs, in column order.
    pub fn fields(&self) -> &[(String, Value)] {
        &self.0
    }

    pub fn into_fields(self) -> Vec<(String, Value)> {
        self.0
    }

    /// The value under `key` (a key as [`columns`] names it).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for EncodedRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// One row as JSON, keys in column order (see the module doc for every type's encoding).
pub fn encode_row(row: &Row) -> Result<EncodedRow, EncodeError> {
    encode_with_keys(row, &unique_keys(row.columns()))
}

/// Every row of a result; the same as [`encode_row`] on each, with the keys computed once.
pub fn encode_rows(rows: &[Row]) -> Result<Vec<EncodedRow>, EncodeError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let keys = unique_keys(first.columns());
    rows.iter()
        .map(|row| encode_with_keys(row, &keys))
        .collect()
}

fn encode_with_keys(row: &Row, keys: &[String]) -> Result<EncodedRow, EncodeError> {
    let mut fields = Vec::with_capacity(keys.len());
    for (idx, (col, key)) in row.columns().iter().zip(keys).enumerate() {
        let raw =
            row.try_get::<_, Option<RawValue<'_>>>(idx)
                .map_err(|e| EncodeError::Malformed {
                    column: col.name().to_owned(),
                    r#type: type_name(col.type_()),
                    reason: e.to_string(),
                })?;
        let value = match raw {
            None => Value::Null,
            Some(RawValue(bytes)) => decode(col.type_(), bytes).map_err(|fail| match fail {
                Fail::Unsupported => EncodeError::Unsupported {
                    column: col.name().to_owned(),
                    r#type: type_name(col.type_()),
                },
                Fail::Malformed(reason) => EncodeError::Malformed {
                    column: col.name().to_owned(),
                    r#type: type_name(col.type_()),
                    reason,
                },
            })?,
        };
        fields.push((key.clone(), value));
    }
    Ok(EncodedRow(fields))
}

/// A column's bytes as the server sent them, whatever the type: this module decodes them itself.
struct RawValue<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Why one value failed; the caller adds the column and type.
#[derive(Debug)]
enum Fail {
    Unsupported,
    Malformed(String),
}

impl From<String> for Fail {
    fn from(reason: String) -> Self {
        Fail::Malformed(reason)
    }
}

type Decoded = Result<Value, Fail>;
