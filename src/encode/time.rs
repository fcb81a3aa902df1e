//! Dates and times as ISO 8601 text. PostgreSQL counts days and microseconds from 2000-01-01
//! (UTC for timestamptz); its infinities are the extreme values of the counters.

use std::fmt::Write as _;

use super::decode::Reader;

pub(super) const USECS_PER_SEC: i64 = 1_000_000;
pub(super) const USECS_PER_MINUTE: i64 = 60 * USECS_PER_SEC;
pub(super) const USECS_PER_HOUR: i64 = 60 * USECS_PER_MINUTE;
pub(super) const USECS_PER_DAY: i64 = 24 * USECS_PER_HOUR;
/// Days from 1970-01-01 (the epoch of `civil_from_days`) to 2000-01-01.
const PG_EPOCH_UNIX_DAYS: i64 = 10_957;

/// (year, month, day) of a day count from 1970-01-01 in the proleptic Gregorian calendar, which
/// is PostgreSQL's calendar too (Howard Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

pub(super) fn date_from_pg_days(days: i64) -> String {
    let (y, m, d) = civil_from_days(days + PG_EPOCH_UNIX_DAYS);
    let year = if (0..=9999).contains(&y) {
        format!("{y:04}")
    } else {
        // ISO 8601's expanded years; six digits is what ECMAScript's Date reads.
        format!("{}{:06}", if y < 0 { '-' } else { '+' }, y.unsigned_abs())
    };
    format!("{year}-{m:02}-{d:02}")
}

pub(super) fn date_text(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => date_from_pg_days(i64::from(d)),
    }
}

/// `HH:MM:SS` plus the fraction without trailing zeros, from microseconds since midnight.
pub(super) fn clock_text(micros: i64) -> String {
    let hours = micros / USECS_PER_HOUR;
    let minutes = micros % USECS_PER_HOUR / USECS_PER_MINUTE;
    let seconds = micros % USECS_PER_MINUTE / USECS_PER_SEC;
    let mut out = format!("{hours:02}:{minutes:02}:{seconds:02}");
    push_fraction(&mut out, micros % USECS_PER_SEC);
    out
}

/// `.ffffff` with trailing zeros removed, nothing for zero; `fraction` in [0, 1_000_000).
pub(super) fn push_fraction(out: &mut String, fraction: i64) {
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

pub(super) fn time_text(micros: i64) -> Result<String, String> {
    // 24:00:00 is a valid PostgreSQL time.
    if !(0..=USECS_PER_DAY).contains(&micros) {
        return Err(format!("time of day {micros} µs out of range"));
    }
    Ok(clock_text(micros))
}

/// `timetz`: microseconds since midnight, then the zone in seconds *west* of UTC.
pub(super) fn timetz_text(raw: &[u8]) -> Result<String, String> {
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
pub(super) fn timestamp_text(micros: i64, suffix: &str) -> String {
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
pub(super) fn interval_text(raw: &[u8]) -> Result<String, String> {
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
