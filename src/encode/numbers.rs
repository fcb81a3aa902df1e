//! Numbers: `float4` and `float8` in PostgreSQL's own shortest form, `numeric` as its exact
//! decimal text.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use serde_json::Value;
use tokio_postgres::types::{FromSql, Type};

use super::decode::Reader;

pub(super) fn float8(v: f64) -> Value {
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

pub(super) fn float4(v: f32) -> Value {
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
pub(super) fn float4_shortest(v: f32) -> f64 {
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
pub(super) const NUMERIC_POS: u16 = 0x0000;
pub(super) const NUMERIC_NEG: u16 = 0x4000;
pub(super) const NUMERIC_NAN: u16 = 0xC000;
pub(super) const NUMERIC_PINF: u16 = 0xD000;
pub(super) const NUMERIC_NINF: u16 = 0xF000;
const NUMERIC_DSCALE_MASK: u16 = 0x3FFF;
const NBASE: i16 = 10000;

/// The decimal text of a binary `numeric`: `ndigits`, `weight`, `sign`, `dscale` (each 16 bits),
/// then `ndigits` base-10000 digits, the first one worth 10000^weight.
pub(super) fn numeric_text(raw: &[u8]) -> Result<String, String> {
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
