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

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use tokio_postgres::types::{FromSql, Kind, Type};
use tokio_postgres::{Column, Row};

use crate::refusal::{ErrorCode, Refusal};

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

/// Built-in type oids: fixed in PostgreSQL's catalog, the same in every database and version.
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const CIDR: u32 = 650;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const MACADDR8: u32 = 774;
    pub const MACADDR: u32 = 829;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    pub const JSONPATH: u32 = 4072;
    /// Oids below this belong to the built-in catalog; extension types get larger ones.
    pub const FIRST_NORMAL_OBJECT_ID: u32 = 16384;
}

/// One non-NULL value of type `ty` from its binary form.
fn decode(ty: &Type, raw: &[u8]) -> Decoded {
    match ty.kind() {
        Kind::Array(member) => return decode_array(member, raw),
        // An enum's binary form is its label.
        Kind::Enum(_) => return text(raw),
        // A domain is sent as its base type.
        Kind::Domain(base) => return decode(base, raw),
        _ => {}
    }
    match ty.oid() {
        oid::BOOL => match raw {
            [b] => Ok(Value::Bool(*b != 0)),
            _ => Err(bad_len(raw, 1)),
        },
        oid::INT2 => Ok(Value::from(i16::from_be_bytes(fixed(raw)?))),
        oid::INT4 => Ok(Value::from(i32::from_be_bytes(fixed(raw)?))),
        oid::INT8 => Ok(Value::from(i64::from_be_bytes(fixed(raw)?))),
        oid::OID => Ok(Value::from(u32::from_be_bytes(fixed(raw)?))),
        oid::FLOAT4 => Ok(float4(f32::from_be_bytes(fixed(raw)?))),
        oid::FLOAT8 => Ok(float8(f64::from_be_bytes(fixed(raw)?))),
        oid::NUMERIC => Ok(Value::String(numeric_text(raw)?)),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN | oid::XML => text(raw),
        oid::CHAR => Ok(Value::String(pg_char(raw)?)),
        oid::BYTEA => Ok(Value::String(format!("\\x{}", hex::encode(raw)))),
        oid::UUID => Ok(Value::String(uuid_text(fixed(raw)?))),
        oid::JSON => json(raw),
        oid::JSONB | oid::JSONPATH => match raw.split_first() {
            // Both start with a format version byte, 1 in every PostgreSQL so far.
            Some((1, rest)) if ty.oid() == oid::JSONB => json(rest),
            Some((1, rest)) => text(rest),
            _ => Err(Fail::Malformed(format!(
                "unknown {} format version",
                ty.name()
            ))),
        },
        oid::DATE => Ok(Value::String(date_text(i32::from_be_bytes(fixed(raw)?)))),
        oid::TIME => Ok(Value::String(time_text(i64::from_be_bytes(fixed(raw)?))?)),
        oid::TIMETZ => Ok(Value::String(timetz_text(raw)?)),
        oid::TIMESTAMP => Ok(Value::String(timestamp_text(
            i64::from_be_bytes(fixed(raw)?),
            "",
        ))),
        oid::TIMESTAMPTZ => Ok(Value::String(timestamp_text(
            i64::from_be_bytes(fixed(raw)?),
            "Z",
        ))),
        oid::INTERVAL => Ok(Value::String(interval_text(raw)?)),
        oid::INET | oid::CIDR => Ok(Value::String(inet_text(raw)?)),
        oid::MACADDR | oid::MACADDR8 => Ok(Value::String(mac_text(raw, ty.oid())?)),
        other if other >= oid::FIRST_NORMAL_OBJECT_ID => decode_extension(ty, raw),
        _ => Err(Fail::Unsupported),
    }
}

/// Types an extension defines (their oids differ per database, so they go by name).
fn decode_extension(ty: &Type, raw: &[u8]) -> Decoded {
    match (ty.kind(), ty.name()) {
        // citext's binary form is its text (citextsend is textsend).
        (Kind::Simple, "citext") => text(raw),
        // No other binary layout is known here; refusing beats guessing.
        _ => Err(Fail::Unsupported),
    }
}

fn text(raw: &[u8]) -> Decoded {
    String::from_utf8(raw.to_vec())
        .map(Value::String)
        .map_err(|e| Fail::Malformed(format!("not UTF-8: {e}")))
}

fn json(raw: &[u8]) -> Decoded {
    serde_json::from_slice(raw).map_err(|e| Fail::Malformed(format!("not JSON: {e}")))
}

/// A fixed-size binary value, or an error naming the size mismatch.
fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], Fail> {
    raw.try_into().map_err(|_| bad_len(raw, N))
}

fn bad_len(raw: &[u8], expected: usize) -> Fail {
    Fail::Malformed(format!(
        "{} bytes where {expected} were expected",
        raw.len()
    ))
}

/// A big-endian reader over a value's bytes, for the variable-length layouts.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "value ends early: {} bytes left where {n} were expected",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Trailing bytes mean the layout was misread: better an error than a half-read value.
    fn finish(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} unexpected trailing bytes", self.0.len()))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers

fn float8(v: f64) -> Value {
    // JSON has no NaN or infinities; these strings are PostgreSQL's own spelling of them.
    if v.is_nan() {
        Value::String("NaN".into())
    } else if v == f64::INFINITY {
        Value::String("Infinity".into())
    } else if v == f64::NEG_INFINITY {
        Value::String("-Infinity".into())
    } else {
        Value::from(v)
    }
}

fn float4(v: f32) -> Value {
    if v.is_finite() {
        Value::from(float4_shortest(v))
    } else {
        float8(f64::from(v))
    }
}

/// The f64 of the decimal PostgreSQL prints for a finite `float4`.
///
/// `v as f64` would carry the f32's binary noise (0.1 → 0.10000000149011612), so the JSON
/// number is instead what PostgreSQL prints (Ryu's shortest form): the fewest significant
/// digits that read back as the same f32, and of those the closest to it. Rust's `Display`
/// differs in two corners, so this searches itself: Ryu never picks a decimal exactly halfway
/// between two f32s (a JSON reader reads an f64, where that tie is a different number), and
/// next to a power of two the nearest decimal may fall just outside the narrower half of the
/// rounding interval while its neighbour one digit away lies inside the wider half.
fn float4_shortest(v: f32) -> f64 {
    let exact = f64::from(v);
    if v == 0.0 {
        return exact;
    }
    // The f32s on either side; the midpoints to them are exact in an f64 (25 significant bits).
    let midpoints = [
        (exact + f64::from(f32::from_bits(v.to_bits().wrapping_sub(1)))) / 2.0,
        (exact + f64::from(f32::from_bits(v.to_bits().wrapping_add(1)))) / 2.0,
    ];
    // Every significant decimal digit of the value (an f32 has at most 105; Rust prints exact
    // digits for any precision), as digits and the power of ten of the first one.
    let full = format!("{:.120e}", exact.abs());
    let Some((mantissa, exp10)) = full.split_once('e') else {
        return exact;
    };
    let Ok(exp10) = exp10.parse::<i64>() else {
        return exact;
    };
    let digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let sign = if v < 0.0 { "-" } else { "" };
    for len in 1..=9usize {
        let (head, rest) = digits.split_at(len.min(digits.len()));
        let down = head.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d));
        let up = down + 1;
        // Where the value lies between `down` and `up`, relative to their midpoint.
        let side = match rest.split_first() {
            None => Ordering::Less,
            Some((&first, tail)) => first.cmp(&5).then(if tail.iter().any(|&d| d != 0) {
                Ordering::Greater
            } else {
                Ordering::Equal
            }),
        };
        // The nearer one first; at an exact tie the even one, as Ryu rounds.
        let order = match side {
            Ordering::Less => [down, up],
            Ordering::Greater => [up, down],
            Ordering::Equal if down % 2 == 0 => [down, up],
            Ordering::Equal => [up, down],
        };
        let power = exp10 - (len as i64 - 1);
        for m in order {
            let candidate = format!("{sign}{m}e{power}");
            if let (Ok(wide), Ok(narrow)) = (candidate.parse::<f64>(), candidate.parse::<f32>()) {
                if narrow == v && !midpoints.contains(&wide) {
                    return wide;
                }
            }
        }
    }
    // Nine significant digits always identify an f32, so this is not reached; the exact value
    // would still be a faithful answer.
    exact
}

/// A PostgreSQL `numeric` as its exact decimal text, decoded from the binary format.
///
/// The text is what PostgreSQL itself prints: all digits, the display scale kept
/// (`1234.50`), and `NaN`, `Infinity`, `-Infinity` for the special values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Numeric(String);

impl Numeric {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> FromSql<'a> for Numeric {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Numeric(numeric_text(raw)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

// The sign word of the binary numeric (PostgreSQL's NUMERIC_POS etc. in numeric.c).
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
const NUMERIC_DSCALE_MASK: u16 = 0x3FFF;
const NBASE: i16 = 10000;

/// The decimal text of a binary `numeric`: `ndigits`, `weight`, `sign`, `dscale` (each 16 bits),
/// then `ndigits` base-10000 digits, the first one worth 10000^weight.
fn numeric_text(raw: &[u8]) -> Result<String, String> {
    let mut r = Reader(raw);
    let ndigits = r.i16()?;
    let weight = r.i16()?;
    let sign = r.u16()?;
    let dscale = r.u16()?;
    let ndigits =
        usize::try_from(ndigits).map_err(|_| format!("negative digit count {ndigits}"))?;
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        let d = r.i16()?;
        if !(0..NBASE).contains(&d) {
            return Err(format!("numeric digit {d} outside 0..{NBASE}"));
        }
        digits.push(d);
    }
    r.finish()?;

    let negative = match sign {
        NUMERIC_POS => false,
        NUMERIC_NEG => true,
        NUMERIC_NAN => return Ok("NaN".into()),
        NUMERIC_PINF => return Ok("Infinity".into()),
        NUMERIC_NINF => return Ok("-Infinity".into()),
        other => return Err(format!("invalid numeric sign word {other:#06x}")),
    };
    if dscale & !NUMERIC_DSCALE_MASK != 0 {
        return Err(format!("invalid numeric display scale {dscale:#06x}"));
    }

    // PostgreSQL strips leading zero digits before it sends; do it again so that a value that
    // was not stripped still prints without leading zeros.
    let mut weight = i32::from(weight);
    let leading_zeros = digits.iter().take_while(|&&d| d == 0).count();
    digits.drain(..leading_zeros);
    weight -= i32::try_from(leading_zeros).map_err(|_| "too many digits".to_owned())?;
    // The digit worth 10000^(weight - i), zero outside the ones that were sent.
    let digit = |i: i32| -> i16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };

    let dscale = usize::from(dscale);
    let mut out = String::with_capacity(4 * (weight.max(0) as usize + 1) + dscale + 2);
    // A zero is never negative in PostgreSQL; "-0.00" would be a value it cannot hold.
    if negative && !digits.is_empty() {
        out.push('-');
    }
    if weight < 0 || digits.is_empty() {
        out.push('0');
    } else {
        for i in 0..=weight {
            // Infallible: writing to a String cannot fail.
            let _ = if i == 0 {
                write!(out, "{}", digit(i))
            } else {
                write!(out, "{:04}", digit(i))
            };
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut i = weight + 1;
        while out.len() - start < dscale {
            let _ = write!(out, "{:04}", digit(i));
            i += 1;
        }
        // Digits beyond the display scale are not part of the value PostgreSQL shows.
        out.truncate(start + dscale);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Text and small fixed layouts

/// The single-byte `"char"`: its byte as a character, or PostgreSQL's `\ooo` for a non-ASCII
/// byte (which is not a character on its own).
fn pg_char(raw: &[u8]) -> Result<String, Fail> {
    match raw {
        [] | [0] => Ok(String::new()),
        [b] if b.is_ascii() => Ok(char::from(*b).to_string()),
        [b] => Ok(format!("\\{b:03o}")),
        _ => Err(bad_len(raw, 1)),
    }
}

fn uuid_text(b: [u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `inet`/`cidr`: family, bits, is_cidr, address length, address. Printed as PostgreSQL does:
/// `/bits` always for cidr, and for inet only when it is not the full address.
fn inet_text(raw: &[u8]) -> Result<String, String> {
    // PGSQL_AF_INET and PGSQL_AF_INET6 in PostgreSQL's inet.h.
    const AF_INET: u8 = 2;
    const AF_INET6: u8 = 3;
    let mut r = Reader(raw);
    let family = r.u8()?;
    let bits = r.u8()?;
    let is_cidr = r.u8()? != 0;
    let len = r.u8()?;
    let addr = r.take(usize::from(len))?;
    r.finish()?;
    let (text, max_bits) = match (family, addr) {
        (AF_INET, &[a, b, c, d]) => (Ipv4Addr::new(a, b, c, d).to_string(), 32),
        (AF_INET6, addr) if addr.len() == 16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(addr);
            (ipv6_text(octets), 128)
        }
        _ => return Err(format!("unknown address family {family} of length {len}")),
    };
    if is_cidr || bits != max_bits {
        Ok(format!("{text}/{bits}"))
    } else {
        Ok(text)
    }
}

/// IPv6 text as PostgreSQL writes it: RFC 5952 (which Rust follows), except that PostgreSQL
/// also keeps the old IPv4-compatible form `::a.b.c.d`.
fn ipv6_text(octets: [u8; 16]) -> String {
    let addr = Ipv6Addr::from(octets);
    let segments = addr.segments();
    if segments[..6].iter().all(|&s| s == 0) && segments[6] != 0 {
        let [.., a, b, c, d] = octets;
        format!("::{}", Ipv4Addr::new(a, b, c, d))
    } else {
        addr.to_string()
    }
}

fn mac_text(raw: &[u8], type_oid: u32) -> Result<String, Fail> {
    let expected = if type_oid == oid::MACADDR { 6 } else { 8 };
    if raw.len() != expected {
        return Err(bad_len(raw, expected));
    }
    Ok(raw
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

// ---------------------------------------------------------------------------------------------
// Dates and times. PostgreSQL counts days and microseconds from 2000-01-01 (UTC for
// timestamptz); its infinities are the extreme values of the counters.

const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_MINUTE: i64 = 60 * USECS_PER_SEC;
const USECS_PER_HOUR: i64 = 60 * USECS_PER_MINUTE;
const USECS_PER_DAY: i64 = 24 * USECS_PER_HOUR;
/// Days from 1970-01-01 (the epoch of `civil_from_days`) to 2000-01-01.
const PG_EPOCH_UNIX_DAYS: i64 = 10_957;

/// (year, month, day) of a day count from 1970-01-01 in the proleptic Gregorian calendar, which
/// is PostgreSQL's calendar too (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let y = if m <= 2 { y + 1 } else { y };
    // Both fit by construction: m is in [1, 12] and d in [1, 31].
    (y, m as u32, d as u32)
}

fn date_from_pg_days(days: i64) -> String {
    let (y, m, d) = civil_from_days(days + PG_EPOCH_UNIX_DAYS);
    let year = if (0..=9999).contains(&y) {
        format!("{y:04}")
    } else {
        // ISO 8601's expanded years; six digits is what ECMAScript's Date reads.
        format!("{}{:06}", if y < 0 { '-' } else { '+' }, y.unsigned_abs())
    };
    format!("{year}-{m:02}-{d:02}")
}

fn date_text(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => date_from_pg_days(i64::from(d)),
    }
}

/// `HH:MM:SS` plus the fraction without trailing zeros, from microseconds since midnight.
fn clock_text(micros: i64) -> String {
    let hours = micros / USECS_PER_HOUR;
    let minutes = micros % USECS_PER_HOUR / USECS_PER_MINUTE;
    let seconds = micros % USECS_PER_MINUTE / USECS_PER_SEC;
    let mut out = format!("{hours:02}:{minutes:02}:{seconds:02}");
    push_fraction(&mut out, micros % USECS_PER_SEC);
    out
}

/// `.ffffff` with trailing zeros removed, nothing for zero; `fraction` in [0, 1_000_000).
fn push_fraction(out: &mut String, fraction: i64) {
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

fn time_text(micros: i64) -> Result<String, String> {
    // 24:00:00 is a valid PostgreSQL time.
    if !(0..=USECS_PER_DAY).contains(&micros) {
        return Err(format!("time of day {micros} µs out of range"));
    }
    Ok(clock_text(micros))
}

/// `timetz`: microseconds since midnight, then the zone in seconds *west* of UTC.
fn timetz_text(raw: &[u8]) -> Result<String, String> {
    let mut r = Reader(raw);
    let micros = r.i64()?;
    let zone = r.i32()?;
    r.finish()?;
    let mut out = time_text(micros)?;
    let east = -i64::from(zone);
    out.push(if east < 0 { '-' } else { '+' });
    let east = east.unsigned_abs();
    let _ = write!(out, "{:02}:{:02}", east / 3600, east % 3600 / 60);
    if east % 60 != 0 {
        let _ = write!(out, ":{:02}", east % 60);
    }
    Ok(out)
}

/// `timestamp` (suffix "") and `timestamptz` (suffix "Z": its count is UTC).
fn timestamp_text(micros: i64, suffix: &str) -> String {
    match micros {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        m => format!(
            "{}T{}{suffix}",
            date_from_pg_days(m.div_euclid(USECS_PER_DAY)),
            clock_text(m.rem_euclid(USECS_PER_DAY))
        ),
    }
}

/// `interval` (microseconds, days, months) as PostgreSQL prints it with
/// `IntervalStyle = iso_8601` (EncodeInterval in datetime.c): each part signed on its own,
/// zero parts left out, `PT0S` for zero.
fn interval_text(raw: &[u8]) -> Result<String, String> {
    let mut r = Reader(raw);
    let micros = r.i64()?;
    let days = r.i32()?;
    let months = r.i32()?;
    r.finish()?;
    // PostgreSQL 17's infinite intervals: every field at its extreme.
    if (micros, days, months) == (i64::MAX, i32::MAX, i32::MAX) {
        return Ok("infinity".into());
    }
    if (micros, days, months) == (i64::MIN, i32::MIN, i32::MIN) {
        return Ok("-infinity".into());
    }
    // Truncating division, as in C: every time part takes the sign of the microseconds.
    let years = months / 12;
    let months = months % 12;
    let hours = micros / USECS_PER_HOUR;
    let minutes = micros % USECS_PER_HOUR / USECS_PER_MINUTE;
    let seconds = micros % USECS_PER_MINUTE / USECS_PER_SEC;
    let fraction = micros % USECS_PER_SEC;
    if micros == 0 && days == 0 && months == 0 && years == 0 {
        return Ok("PT0S".into());
    }
    let mut out = String::from("P");
    let part = |out: &mut String, value: i64, unit: char| {
        if value != 0 {
            let _ = write!(out, "{value}{unit}");
        }
    };
    part(&mut out, i64::from(years), 'Y');
    part(&mut out, i64::from(months), 'M');
    part(&mut out, i64::from(days), 'D');
    if micros != 0 {
        out.push('T');
    }
    part(&mut out, hours, 'H');
    part(&mut out, minutes, 'M');
    if seconds != 0 || fraction != 0 {
        if seconds < 0 || fraction < 0 {
            out.push('-');
        }
        let _ = write!(out, "{}", seconds.unsigned_abs());
        push_fraction(&mut out, fraction.abs());
        out.push('S');
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Arrays

/// PostgreSQL's MAXDIM.
const MAX_ARRAY_DIMS: usize = 6;

/// A binary array: dimension count, has-null flag, element oid, (length, lower bound) per
/// dimension, then each element as a length (-1 for NULL) and its bytes, in row-major order.
fn decode_array(member: &Type, raw: &[u8]) -> Decoded {
    let mut r = Reader(raw);
    let ndim = r.i32()?;
    let _has_null = r.i32()?;
    let element_oid = r.u32()?;
    let ndim = usize::try_from(ndim)
        .ok()
        .filter(|&n| n <= MAX_ARRAY_DIMS)
        .ok_or_else(|| format!("invalid array dimension count {ndim}"))?;
    if ndim > 0 && element_oid != member.oid() {
        return Err(Fail::Malformed(format!(
            "array elements have type oid {element_oid}, expected {}",
            member.oid()
        )));
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let len = r.i32()?;
        let _lower_bound = r.i32()?;
        dims.push(usize::try_from(len).map_err(|_| format!("negative array length {len}"))?);
    }
    let value = array_level(member, &dims, &mut r)?;
    r.finish()?;
    Ok(value)
}

/// One level of an array: `dims[0]` items, each an element (at the last level) or a nested
/// array of the remaining dimensions. No dimensions at all is the empty array.
fn array_level(member: &Type, dims: &[usize], r: &mut Reader<'_>) -> Decoded {
    let Some((&len, inner)) = dims.split_first() else {
        return Ok(Value::Array(Vec::new()));
    };
    // Each element needs at least its 4-byte length, so a length beyond that is a lie; checking
    // it first keeps a corrupt length from reserving a huge vector.
    if len > r.0.len() / 4 + 1 {
        return Err(Fail::Malformed(format!(
            "array length {len} exceeds the value"
        )));
    }
    let mut items = Vec::with_capacity(len);
    for _ in 0..len {
        let item = if inner.is_empty() {
            match r.i32()? {
                -1 => Value::Null,
                n => {
                    let n =
                        usize::try_from(n).map_err(|_| format!("invalid element length {n}"))?;
                    decode(member, r.take(n)?)?
                }
            }
        } else {
            array_level(member, inner, r)?
        };
        items.push(item);
    }
    Ok(Value::Array(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary numeric from its header fields and base-10000 digits.
    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> String {
        numeric_text(&numeric_bytes(weight, sign, dscale, digits)).unwrap()
    }

    #[test]
    fn numeric_zero() {
        assert_eq!(numeric(0, NUMERIC_POS, 0, &[]), "0");
        assert_eq!(numeric(0, NUMERIC_POS, 2, &[]), "0.00");
        // A negative zero cannot exist in PostgreSQL; never print one.
        assert_eq!(numeric(0, NUMERIC_NEG, 1, &[]), "0.0");
        assert_eq!(numeric(0, NUMERIC_NEG, 1, &[0]), "0.0");
    }

    #[test]
    fn numeric_negative_half() {
        assert_eq!(numeric(-1, NUMERIC_NEG, 1, &[5000]), "-0.5");
    }

    #[test]
    fn numeric_keeps_display_scale() {
        // 123456789.000100 = 1|2345|6789 . 0001|00
        assert_eq!(
            numeric(2, NUMERIC_POS, 6, &[1, 2345, 6789, 1]),
            "123456789.000100"
        );
        assert_eq!(numeric(0, NUMERIC_POS, 2, &[1234, 5000]), "1234.50");
        assert_eq!(numeric(0, NUMERIC_POS, 0, &[7]), "7");
        assert_eq!(numeric(1, NUMERIC_POS, 0, &[1, 0]), "10000");
        // Trailing zero digits are not sent; the display scale still says how many to show.
        assert_eq!(numeric(1, NUMERIC_POS, 3, &[1]), "10000.000");
    }

    #[test]
    fn numeric_tiny() {
        // 1e-20 is the digit 1 worth 10000^-5.
        assert_eq!(numeric(-5, NUMERIC_POS, 20, &[1]), "0.00000000000000000001");
        assert_eq!(numeric(-1, NUMERIC_POS, 4, &[1]), "0.0001");
        assert_eq!(numeric(-2, NUMERIC_NEG, 7, &[12]), "-0.0000001");
    }

    #[test]
    fn numeric_special_values() {
        assert_eq!(numeric(0, NUMERIC_NAN, 0, &[]), "NaN");
        assert_eq!(numeric(0, NUMERIC_PINF, 0, &[]), "Infinity");
        assert_eq!(numeric(0, NUMERIC_NINF, 0, &[]), "-Infinity");
    }

    #[test]
    fn numeric_huge() {
        // 1e100: the digit 1 worth 10000^25.
        assert_eq!(
            numeric(25, NUMERIC_POS, 0, &[1]),
            format!("1{}", "0".repeat(100))
        );
        // 123456789012345678901234567890.123456789
        assert_eq!(
            numeric(
                7,
                NUMERIC_POS,
                9,
                &[12, 3456, 7890, 1234, 5678, 9012, 3456, 7890, 1234, 5678, 9000]
            ),
            "123456789012345678901234567890.123456789"
        );
        // The largest weight PostgreSQL allows still decodes (131072 integer digits).
        let text = numeric(i16::MAX, NUMERIC_NEG, 0, &[9999]);
        assert_eq!(text.len(), 1 + 4 + 4 * i16::MAX as usize);
        assert!(text.starts_with("-9999000"));
    }

    #[test]
    fn numeric_strips_leading_zero_digits() {
        assert_eq!(numeric(2, NUMERIC_POS, 1, &[0, 0, 5, 1000]), "5.1");
    }

    #[test]
    fn numeric_rejects_malformed_bytes() {
        assert!(numeric_text(&[]).is_err());
        assert!(numeric_text(&[0, 1, 0, 0, 0, 0, 0]).is_err());
        // Says one digit, sends none.
        let mut missing = numeric_bytes(0, NUMERIC_POS, 0, &[]);
        missing[..2].copy_from_slice(&1i16.to_be_bytes());
        assert!(numeric_text(&missing).is_err());
        let mut short = numeric_bytes(0, NUMERIC_POS, 0, &[1]);
        short.pop();
        assert!(numeric_text(&short).is_err());
        let mut long = numeric_bytes(0, NUMERIC_POS, 0, &[1]);
        long.push(0);
        assert!(numeric_text(&long).is_err());
        assert!(numeric_text(&numeric_bytes(0, NUMERIC_POS, 0, &[10000])).is_err());
        assert!(numeric_text(&numeric_bytes(0, NUMERIC_POS, 0, &[-1])).is_err());
        assert!(numeric_text(&numeric_bytes(0, 0x1234, 0, &[1])).is_err());
        assert!(numeric_text(&numeric_bytes(0, NUMERIC_POS, 0x4000, &[1])).is_err());
        let mut negative_count = numeric_bytes(0, NUMERIC_POS, 0, &[]);
        negative_count[..2].copy_from_slice(&(-1i16).to_be_bytes());
        assert!(numeric_text(&negative_count).is_err());
    }

    #[test]
    fn numeric_from_sql() {
        let n =
            Numeric::from_sql(&Type::NUMERIC, &numeric_bytes(-1, NUMERIC_NEG, 1, &[5000])).unwrap();
        assert_eq!(n.as_str(), "-0.5");
        assert_eq!(n.to_string(), "-0.5");
        assert!(<Numeric as FromSql>::accepts(&Type::NUMERIC));
        assert!(!<Numeric as FromSql>::accepts(&Type::FLOAT8));
    }

    fn interval(micros: i64, days: i32, months: i32) -> String {
        let mut raw = micros.to_be_bytes().to_vec();
        raw.extend_from_slice(&days.to_be_bytes());
        raw.extend_from_slice(&months.to_be_bytes());
        interval_text(&raw).unwrap()
    }

    #[test]
    fn intervals_follow_postgres_iso_8601_style() {
        let t = |h: i64, m: i64, s: i64, us: i64| {
            h * USECS_PER_HOUR + m * USECS_PER_MINUTE + s * USECS_PER_SEC + us
        };
        assert_eq!(interval(t(4, 5, 6, 500_000), 3, 14), "P1Y2M3DT4H5M6.5S");
        assert_eq!(interval(0, 0, 0), "PT0S");
        assert_eq!(interval(t(2, 0, 0, 0), -1, 0), "P-1DT2H");
        assert_eq!(interval(-t(0, 0, 1, 500_000), 0, -13), "P-1Y-1MT-1.5S");
        assert_eq!(interval(-1, 0, 0), "PT-0.000001S");
        assert_eq!(interval(0, 0, 24), "P2Y");
        assert_eq!(interval(i64::MAX, i32::MAX, i32::MAX), "infinity");
        assert_eq!(interval(i64::MIN, i32::MIN, i32::MIN), "-infinity");
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(date_text(0), "2000-01-01");
        assert_eq!(date_text(-1), "1999-12-31");
        assert_eq!(date_text(8825), "2024-02-29");
        assert_eq!(date_text(i32::MAX), "infinity");
        assert_eq!(date_text(i32::MIN), "-infinity");
        // 0001-01-01 is day -730119; the day before is 1 BC, year 0000.
        assert_eq!(date_text(-730_119), "0001-01-01");
        assert_eq!(date_text(-730_120), "0000-12-31");
        assert_eq!(date_text(-730_120 - 366), "-000001-12-31");
        assert_eq!(timestamp_text(0, "Z"), "2000-01-01T00:00:00Z");
        assert_eq!(timestamp_text(-1, ""), "1999-12-31T23:59:59.999999");
        assert_eq!(timestamp_text(i64::MAX, ""), "infinity");
        assert_eq!(timestamp_text(i64::MIN, "Z"), "-infinity");
        assert_eq!(time_text(USECS_PER_DAY).unwrap(), "24:00:00");
        assert!(time_text(USECS_PER_DAY + 1).is_err());
    }

    #[test]
    fn floats() {
        assert_eq!(float4(0.1).to_string(), "0.1");
        assert_eq!(float4(f32::NAN), Value::String("NaN".into()));
        assert_eq!(float8(f64::NEG_INFINITY), Value::String("-Infinity".into()));
        assert_eq!(float8(1.5).to_string(), "1.5");
    }

    #[test]
    fn cast_hints() {
        assert_eq!(
            cast_hint("location"),
            "cast it to text in the query, e.g. SELECT location::text"
        );
        assert_eq!(
            cast_hint("My \"Col\""),
            "cast it to text in the query, e.g. SELECT \"My \"\"Col\"\"\"::text"
        );
        assert_eq!(
            cast_hint("?column?"),
            "cast it to text in the query, e.g. SELECT (expression)::text"
        );
    }

    #[test]
    fn arrays_reject_lying_lengths() {
        let mut raw = Vec::new();
        for v in [1i32, 0, 23, i32::MAX, 1] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        assert!(matches!(
            decode_array(&Type::INT4, &raw),
            Err(Fail::Malformed(_))
        ));
    }
}
