//! PostgreSQL values as JSON.
//!
//! | PostgreSQL | JSON |
//! |---|---|
//! | int2/4/8, oid, xid | integer |
//! | float4/8 | number; `"NaN"`, `"Infinity"`, `"-Infinity"` as strings |
//! | numeric | string, exact (`"12.50"`; `"NaN"`) |
//! | text, varchar, char(n), name, xml, enums | string |
//! | bool | bool |
//! | timestamptz | RFC 3339 in UTC with offset (`2024-05-01T03:00:00+00:00`) |
//! | timestamp | `YYYY-MM-DDTHH:MM:SS[.ffffff]`; date `YYYY-MM-DD`; time `HH:MM:SS[.ffffff]` |
//! | ±infinity timestamps and dates | `"infinity"`, `"-infinity"` |
//! | interval | PostgreSQL-style text (`1 year 2 mons 3 days 04:05:06`) |
//! | json, jsonb | the JSON itself |
//! | uuid | string; bytea: base64 |
//! | one-dimensional arrays of any of these | JSON arrays (NULL elements as null) |
//! | inet, cidr, macaddr | their usual text (`10.0.0.5`, `10.0.0.0/8`, `08:00:2b:01:02:03`) |
//! | regclass and other reg* types | their numeric OID (write `x::regclass::text` for the name) |
//! | anything else | its text when the binary form is plain text, else an error naming the column |

use std::fmt::Write as _;

use serde_json::Value;
use sqlx::postgres::types::{Oid, PgInterval, PgTimeTz};
use sqlx::postgres::{PgRow, PgTypeInfo, PgTypeKind, PgValueFormat, PgValueRef, Postgres};
use sqlx::{Decode, Row, Type, TypeInfo, ValueRef};

use super::exec;

type BoxError = sqlx::error::BoxDynError;

/// The JSON form of column `i`.
pub(super) fn cell(row: &PgRow, i: usize) -> Result<Value, String> {
    let value = row.try_get_raw(i).map_err(|e| e.to_string())?;
    to_json(value).map_err(|e| e.to_string())
}

/// One decoded value; lets sqlx's array decoder hand us each element with its own type.
struct Cell(Value);

impl Type<Postgres> for Cell {
    fn type_info() -> PgTypeInfo {
        // Only consulted for text-format arrays, whose elements arrive as text.
        PgTypeInfo::with_name("text")
    }
    fn compatible(_: &PgTypeInfo) -> bool {
        true
    }
}

impl<'r> Decode<'r, Postgres> for Cell {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxError> {
        to_json(value).map(Cell)
    }
}

/// `Decode` for PostgreSQL, spelled once (the crate also links the MySQL and SQLite drivers).
fn d<'r, T: Decode<'r, Postgres>>(value: PgValueRef<'r>) -> Result<T, BoxError> {
    T::decode(value)
}

fn to_json(value: PgValueRef<'_>) -> Result<Value, BoxError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let ty = value.type_info().into_owned();
    let binary = value.format() == PgValueFormat::Binary;
    if let PgTypeKind::Array(_) = ty.kind() {
        if !binary {
            return Ok(Value::String(value.as_str()?.to_string()));
        }
        let items = d::<Vec<Option<Cell>>>(value)?;
        return Ok(Value::Array(
            items
                .into_iter()
                .map(|c| c.map_or(Value::Null, |c| c.0))
                .collect(),
        ));
    }
    let oid = ty.oid().map_or(0, |o| o.0);
    Ok(match oid {
        16 => Value::Bool(d::<bool>(value)?),
        21 => d::<i16>(value)?.into(),
        23 => d::<i32>(value)?.into(),
        20 => d::<i64>(value)?.into(),
        700 => exec::float32(d::<f32>(value)?),
        701 => exec::float(d::<f64>(value)?),
        1700 if binary => Value::String(numeric(value.as_bytes()?)?),
        25 | 1043 | 1042 | 19 | 705 | 142 | 1700 => Value::String(value.as_str()?.to_string()),
        // "char": one byte.
        18 => Value::String(String::from_utf8_lossy(value.as_bytes()?).into_owned()),
        1184 | 1114 if binary && infinite(value.as_bytes()?, 8) => infinity(value.as_bytes()?),
        1082 if binary && infinite(value.as_bytes()?, 4) => infinity(value.as_bytes()?),
        1184 => Value::String(exec::timestamptz(d::<chrono::DateTime<chrono::Utc>>(
            value,
        )?)),
        1114 => Value::String(exec::datetime(d::<chrono::NaiveDateTime>(value)?)),
        1082 => Value::String(
            d::<chrono::NaiveDate>(value)?
                .format("%Y-%m-%d")
                .to_string(),
        ),
        1083 => Value::String(exec::time(d::<chrono::NaiveTime>(value)?)),
        1266 => {
            let t = d::<PgTimeTz<chrono::NaiveTime, chrono::FixedOffset>>(value)?;
            Value::String(format!("{}{}", exec::time(t.time), t.offset))
        }
        1186 if binary => Value::String(interval(&d::<PgInterval>(value)?)),
        1186 => Value::String(value.as_str()?.to_string()),
        114 | 3802 => d::<sqlx::types::Json<Value>>(value)?.0,
        2950 => Value::String(d::<uuid::Uuid>(value)?.to_string()),
        17 => exec::base64(&d::<Vec<u8>>(value)?),
        2278 => Value::Null,
        869 | 650 if binary => Value::String(inet(value.as_bytes()?, oid == 650)?),
        829 if binary => Value::String(mac(value.as_bytes()?)),
        26 => d::<Oid>(value)?.0.into(),
        // regproc, regprocedure, regoper(ator), regclass, regtype, regnamespace, regrole,
        // regconfig, regdictionary, xid, cid: an OID-sized number on the wire.
        24 | 2202 | 2203 | 2204 | 2205 | 2206 | 4089 | 4096 | 3734 | 3769 | 28 | 29 if binary => {
            d::<Oid>(value)?.0.into()
        }
        _ if !binary => Value::String(value.as_str()?.to_string()),
        _ if matches!(ty.kind(), PgTypeKind::Enum(_)) => Value::String(value.as_str()?.to_string()),
        _ => plain_text(value.as_bytes()?)
            .ok_or_else(|| format!("{} is sent in a binary form", ty.name()))?,
    })
}

/// Types whose binary form is their text (citext, ltree's label, ...) still read as text;
/// anything with control bytes is a real binary encoding and is refused.
fn plain_text(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let clean = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'));
    clean.then(|| Value::String(text.to_string()))
}

fn infinite(bytes: &[u8], width: usize) -> bool {
    match (width, bytes) {
        (8, b) if b.len() == 8 => matches!(
            i64::from_be_bytes(b.try_into().unwrap_or_default()),
            i64::MAX | i64::MIN
        ),
        (4, b) if b.len() == 4 => matches!(
            i32::from_be_bytes(b.try_into().unwrap_or_default()),
            i32::MAX | i32::MIN
        ),
        _ => false,
    }
}

fn infinity(bytes: &[u8]) -> Value {
    // The sign bit of the big-endian sentinel.
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    Value::String(if negative { "-infinity" } else { "infinity" }.into())
}

/// inet/cidr on the wire: family (2 = IPv4, 3 = IPv6), prefix bits, is_cidr, length, address.
fn inet(bytes: &[u8], cidr: bool) -> Result<String, BoxError> {
    let (family, bits, addr) = match bytes {
        [family, bits, _, _, addr @ ..] => (*family, *bits, addr),
        _ => return Err("truncated inet".into()),
    };
    let (ip, full): (std::net::IpAddr, u8) = match (family, addr.len()) {
        (2, 4) => (
            <[u8; 4]>::try_from(addr).map_err(|_| "bad inet")?.into(),
            32,
        ),
        (3, 16) => (
            <[u8; 16]>::try_from(addr).map_err(|_| "bad inet")?.into(),
            128,
        ),
        _ => return Err(format!("unknown inet family {family}").into()),
    };
    Ok(if cidr || bits != full {
        format!("{ip}/{bits}")
    } else {
        ip.to_string()
    })
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The exact decimal text of a binary `numeric`: base-10000 digits, weight, sign, scale.
fn numeric(bytes: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        match bytes.get(2 * i..2 * i + 2) {
            Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
            _ => Err("truncated numeric".into()),
        }
    };
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<Result<_, _>>()?;
    let digit = |pos: i32| -> u16 {
        usize::try_from(pos)
            .ok()
            .and_then(|p| digits.get(p).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for pos in 0..=weight {
            let _ = if pos == 0 {
                write!(out, "{}", digit(pos))
            } else {
                write!(out, "{:04}", digit(pos))
            };
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut pos = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(pos));
            pos += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

/// PostgreSQL's own `IntervalStyle = postgres` rendering.
fn interval(iv: &PgInterval) -> String {
    let unit = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut parts = Vec::new();
    let (years, months) = (iv.months / 12, iv.months % 12);
    if years != 0 {
        parts.push(unit(i64::from(years), "year", "years"));
    }
    if months != 0 {
        parts.push(unit(i64::from(months), "mon", "mons"));
    }
    if iv.days != 0 {
        parts.push(unit(i64::from(iv.days), "day", "days"));
    }
    if iv.microseconds != 0 || parts.is_empty() {
        let sign = if iv.microseconds < 0 { "-" } else { "" };
        let us = iv.microseconds.unsigned_abs();
        let (h, m, s, frac) = (
            us / 3_600_000_000,
            us / 60_000_000 % 60,
            us / 1_000_000 % 60,
            us % 1_000_000,
        );
        let mut clock = format!("{sign}{h:02}:{m:02}:{s:02}");
        if frac != 0 {
            let _ = write!(clock, ".{}", format!("{frac:06}").trim_end_matches('0'));
        }
        parts.push(clock);
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(words: &[u16]) -> String {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        numeric(&bytes).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn numerics() {
        // 12345.678 = [1][2345].[6780], weight 1, dscale 3
        assert_eq!(num(&[3, 1, 0, 3, 1, 2345, 6780]), "12345.678");
        // 0.0001 = weight -1, digit 1, dscale 4
        assert_eq!(num(&[1, 0xFFFF, 0, 4, 1]), "0.0001");
        // -1.50 with dscale 2
        assert_eq!(num(&[2, 0, 0x4000, 2, 1, 5000]), "-1.50");
        // 0 with dscale 0: no digits
        assert_eq!(num(&[0, 0, 0, 0]), "0");
        // 20000 = [2] weight 1 (trailing zero group dropped)
        assert_eq!(num(&[1, 1, 0, 0, 2]), "20000");
        assert_eq!(num(&[0, 0, 0xC000, 0]), "NaN");
    }

    #[test]
    fn intervals() {
        let iv = |months, days, microseconds| {
            interval(&PgInterval {
                months,
                days,
                microseconds,
            })
        };
        assert_eq!(iv(14, 3, 14_706_500_000), "1 year 2 mons 3 days 04:05:06.5");
        assert_eq!(iv(0, 0, 0), "00:00:00");
        assert_eq!(iv(0, 1, 0), "1 day");
        assert_eq!(iv(0, 0, -3_600_000_000), "-01:00:00");
    }
}
