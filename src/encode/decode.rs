//! The dispatch from a type to its decoder, and the binary readers every decoder shares.
//!
//! tokio-postgres hands over each value's raw bytes; [`decode`] picks the layout by kind (array,
//! enum, domain) and then by the built-in oid, and refuses what it does not know.

use serde_json::Value;
use tokio_postgres::types::{Kind, Type};

use super::numbers::{float4, float8, numeric_text};
use super::scalars::{inet_text, mac_text, pg_char, uuid_text};
use super::time::{date_text, interval_text, time_text, timestamp_text, timetz_text};
use super::{Decoded, Fail};

/// Built-in type oids: fixed in PostgreSQL's catalog, the same in every database and version.
pub(super) mod oid {
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
pub(super) fn decode(ty: &Type, raw: &[u8]) -> Decoded {
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

pub(super) fn text(raw: &[u8]) -> Decoded {
    String::from_utf8(raw.to_vec())
        .map(Value::String)
        .map_err(|e| Fail::Malformed(format!("not UTF-8: {e}")))
}

pub(super) fn json(raw: &[u8]) -> Decoded {
    serde_json::from_slice(raw).map_err(|e| Fail::Malformed(format!("not JSON: {e}")))
}

/// A fixed-size binary value, or an error naming the size mismatch.
pub(super) fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], Fail> {
    raw.try_into().map_err(|_| bad_len(raw, N))
}

pub(super) fn bad_len(raw: &[u8], expected: usize) -> Fail {
    Fail::Malformed(format!(
        "{} bytes where {expected} were expected",
        raw.len()
    ))
}

/// A big-endian reader over a value's bytes, for the variable-length layouts.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
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

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(super) fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(super) fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(super) fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Trailing bytes mean the layout was misread: better an error than a half-read value.
    pub(super) fn finish(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!("{} unexpected trailing bytes", self.0.len()))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arrays

/// PostgreSQL's MAXDIM.
const MAX_ARRAY_DIMS: usize = 6;

/// A binary array: dimension count, has-null flag, element oid, (length, lower bound) per
/// dimension, then each element as a length (-1 for NULL) and its bytes, in row-major order.
pub(super) fn decode_array(member: &Type, raw: &[u8]) -> Decoded {
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
pub(super) fn array_level(member: &Type, dims: &[usize], r: &mut Reader<'_>) -> Decoded {
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
