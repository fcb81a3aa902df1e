//! Small fixed layouts written as PostgreSQL's text: `"char"`, `uuid`, `inet`/`cidr`,
//! `macaddr`/`macaddr8`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::decode::{bad_len, oid, Reader};
use super::Fail;

/// The single-byte `"char"`: its byte as a character, or PostgreSQL's `\ooo` for a non-ASCII
/// byte (which is not a character on its own).
pub(super) fn pg_char(raw: &[u8]) -> Result<String, Fail> {
    match raw {
        [] | [0] => Ok(String::new()),
        [b] if b.is_ascii() => Ok(char::from(*b).to_string()),
        [b] => Ok(format!("\\{b:03o}")),
        _ => Err(bad_len(raw, 1)),
    }
}

pub(super) fn uuid_text(b: [u8; 16]) -> String {
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
pub(super) fn inet_text(raw: &[u8]) -> Result<String, String> {
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
pub(super) fn ipv6_text(octets: [u8; 16]) -> String {
    let addr = Ipv6Addr::from(octets);
    let segments = addr.segments();
    if segments[..6].iter().all(|&s| s == 0) && segments[6] != 0 {
        let [.., a, b, c, d] = octets;
        format!("::{}", Ipv4Addr::new(a, b, c, d))
    } else {
        addr.to_string()
    }
}

pub(super) fn mac_text(raw: &[u8], type_oid: u32) -> Result<String, Fail> {
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
