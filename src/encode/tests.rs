//! Unit tests of the decoders on hand-built binary values; `tests/encode_types.rs` checks them
//! against a real PostgreSQL.

use serde_json::Value;
use tokio_postgres::types::{FromSql, Type};

use super::decode::decode_array;
use super::numbers::{
    float4, float8, numeric_text, Numeric, NUMERIC_NAN, NUMERIC_NEG, NUMERIC_NINF, NUMERIC_PINF,
    NUMERIC_POS,
};
use super::time::{
    date_text, interval_text, time_text, timestamp_text, USECS_PER_DAY, USECS_PER_HOUR,
    USECS_PER_MINUTE, USECS_PER_SEC,
};
use super::{cast_hint, Fail};

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
    let n = Numeric::from_sql(&Type::NUMERIC, &numeric_bytes(-1, NUMERIC_NEG, 1, &[5000])).unwrap();
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
