//! Converts one value to the type of the column it lands in, exactly or not
//! at all: a value that would overflow, lose digits, be cut short or not
//! parse is refused with the SQL-standard SQLSTATE of that refusal, and its
//! row goes to the rejects table like a row the database refused.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

use crate::iso;
use crate::types::FerryType;
use crate::value::{canonical_decimal, decimal_digits, parse_uuid, Value};

/// Why a value cannot land in its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// SQLSTATE of the refusal: 22003 (out of range), 22001 (too long),
    /// 22P02 (does not parse), 22007 (bad date or time), 22023 (other).
    pub sqlstate: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

fn refuse(sqlstate: &'static str, message: String) -> Refusal {
    Refusal { sqlstate, message }
}

fn out_of_range(v: &dyn std::fmt::Display, to: &FerryType) -> Refusal {
    refuse(
        "22003",
        format!("value {v} is out of range for {}", to.describe()),
    )
}

fn no_parse(text: &str, to: &FerryType) -> Refusal {
    refuse(
        "22P02",
        format!("invalid input for {}: {text:?}", to.describe()),
    )
}

/// The text form of a value, as it lands in a text column.
fn as_text(v: &Value) -> String {
    match v {
        Value::Text(t) | Value::Json(t) => t.clone(),
        Value::Timestamp(t) => iso::format_timestamp(t, ""),
        Value::TimestampTz(t) => iso::format_timestamp(&t.naive_utc(), "+00"),
        Value::Time(t) => iso::format_time(t),
        other => other.canonical().unwrap_or_default(),
    }
}

/// An integer as i128, from any value that is one exactly.
fn integral(v: &Value, to: &FerryType) -> Result<i128, Refusal> {
    match v {
        Value::Int(i) => Ok(i128::from(*i)),
        Value::UInt(u) => Ok(i128::from(*u)),
        Value::Bool(b) => Ok(i128::from(*b)),
        Value::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1.7e38 {
                Ok(*f as i128)
            } else {
                Err(refuse(
                    "22003",
                    format!("value {f} is not a whole number for {}", to.describe()),
                ))
            }
        }
        Value::Decimal(d) | Value::Text(d) => {
            let c = canonical_decimal(d).ok_or_else(|| no_parse(d, to))?;
            if c.contains('.') {
                return Err(refuse(
                    "22003",
                    format!("value {c} is not a whole number for {}", to.describe()),
                ));
            }
            c.parse::<i128>().map_err(|_| out_of_range(&c, to))
        }
        other => Err(no_parse(&as_text(other), to)),
    }
}

/// A decimal's canonical text, from any exact numeric value.
fn decimal_text(v: &Value, to: &FerryType) -> Result<String, Refusal> {
    match v {
        Value::Int(i) => Ok(i.to_string()),
        Value::UInt(u) => Ok(u.to_string()),
        Value::Bool(b) => Ok(u8::from(*b).to_string()),
        // the shortest text that reads back as the same float
        Value::Float(f) if f.is_finite() => {
            let s = format!("{f}");
            canonical_decimal(&s).ok_or_else(|| no_parse(&s, to))
        }
        Value::Float(f) => Err(out_of_range(f, to)),
        Value::Decimal(d) | Value::Text(d) => canonical_decimal(d).ok_or_else(|| no_parse(d, to)),
        other => Err(no_parse(&as_text(other), to)),
    }
}

/// A timestamp in text, with its instant when the text names a zone.
pub(crate) fn parse_timestamp(text: &str) -> Option<(NaiveDateTime, Option<DateTime<Utc>>)> {
    let t = text.trim();
    // the plain ISO forms first, without chrono's format strings (the same
    // results: none of the forms below reads these differently)
    if let Some(dt) = iso::parse_timestamptz(t) {
        return Some((dt.naive_utc(), Some(dt)));
    }
    if let Some(dt) = iso::parse_timestamp(t) {
        return Some((dt, None));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some((dt.naive_utc(), Some(dt.with_timezone(&Utc))));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(t, f) {
            return Some((dt.naive_utc(), Some(dt.with_timezone(&Utc))));
        }
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, f) {
            return Some((dt, None));
        }
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| (dt, None))
}

fn midnight(t: &NaiveDateTime) -> bool {
    t.num_seconds_from_midnight() == 0 && t.nanosecond() == 0
}

/// Refuses a canonical decimal `c` with more digits than a decimal type of
/// `precision` and `scale` (`to`) holds: it would be rounded or overflow.
pub(crate) fn check_decimal_digits(
    c: &str,
    precision: Option<u32>,
    scale: Option<u32>,
    to: &FerryType,
) -> Result<(), Refusal> {
    let (int, frac) = decimal_digits(c);
    match (precision.map(|p| p as usize), scale.map(|s| s as usize)) {
        // precision and scale: digits before and after the point
        (Some(p), Some(s)) => {
            if frac > s {
                return Err(refuse(
                    "22003",
                    format!("value {c} has more than {s} digits after the point for {}: it would be rounded", to.describe()),
                ));
            }
            if int > p.saturating_sub(s) {
                return Err(out_of_range(&c, to));
            }
        }
        // precision alone: significant digits, wherever the point is
        (Some(p), None) if int + frac > p => {
            return Err(refuse(
                "22003",
                format!(
                    "value {c} has more than {p} significant digits for {}: it would be rounded",
                    to.describe()
                ),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Converts `v` to a value of type `to`, or refuses it.
pub fn convert(v: Value, to: &FerryType) -> Result<Value, Refusal> {
    use FerryType as T;
    if v.is_null() {
        return Ok(Value::Null);
    }
    match to {
        T::Other(_) => Ok(v),
        T::Bool => match v {
            Value::Bool(b) => Ok(Value::Bool(b)),
            Value::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" | "on" => Ok(Value::Bool(true)),
                "false" | "f" | "0" | "no" | "n" | "off" => Ok(Value::Bool(false)),
                _ => Err(no_parse(&t, to)),
            },
            other => match integral(&other, to)? {
                0 => Ok(Value::Bool(false)),
                1 => Ok(Value::Bool(true)),
                n => Err(out_of_range(&n, to)),
            },
        },
        T::Int { .. } => {
            let n = integral(&v, to)?;
            let (lo, hi) = to.int_range().unwrap_or((i128::MIN, i128::MAX));
            if n < lo || n > hi {
                return Err(out_of_range(&n, to));
            }
            Ok(i64::try_from(n)
                .map(Value::Int)
                .unwrap_or(Value::UInt(n as u64)))
        }
        T::Float { bits } => {
            let f = match &v {
                Value::Float(f) => *f,
                Value::Int(i) => *i as f64,
                Value::UInt(u) => *u as f64,
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::Decimal(d) | Value::Text(d) => {
                    d.trim().parse::<f64>().map_err(|_| no_parse(d, to))?
                }
                other => return Err(no_parse(&as_text(other), to)),
            };
            // exact only when the value reads back unchanged
            let back = if *bits == 32 { f64::from(f as f32) } else { f };
            let exact = match &v {
                Value::Int(i) => back as i128 == i128::from(*i),
                Value::UInt(u) => back as i128 == i128::from(*u),
                Value::Decimal(d) | Value::Text(d) => {
                    canonical_decimal(&format!("{back}")) == canonical_decimal(d)
                }
                _ => back == f || (back.is_nan() && f.is_nan()),
            };
            if !exact {
                return Err(refuse(
                    "22003",
                    format!(
                        "value {} would not be exact as {}",
                        as_text(&v),
                        to.describe()
                    ),
                ));
            }
            Ok(Value::Float(back))
        }
        T::Decimal { precision, scale } => {
            let c = decimal_text(&v, to)?;
            check_decimal_digits(&c, *precision, *scale, to)?;
            Ok(Value::Decimal(c))
        }
        T::Text { max_chars } => {
            let t = as_text(&v);
            if let Some(max) = max_chars {
                if t.chars().count() > *max as usize {
                    return Err(refuse(
                        "22001",
                        format!(
                            "value too long for {} ({} characters)",
                            to.describe(),
                            t.chars().count()
                        ),
                    ));
                }
            }
            Ok(Value::Text(t))
        }
        T::Bytes { max_bytes } => {
            let b = match v {
                Value::Bytes(b) => b,
                Value::Uuid(u) => u.to_vec(),
                Value::Text(t) | Value::Json(t) => t.into_bytes(),
                other => return Err(no_parse(&as_text(&other), to)),
            };
            if max_bytes.is_some_and(|m| b.len() > m as usize) {
                return Err(refuse(
                    "22001",
                    format!("value too long for {} ({} bytes)", to.describe(), b.len()),
                ));
            }
            Ok(Value::Bytes(b))
        }
        T::Date => match v {
            Value::Date(d) => Ok(Value::Date(d)),
            Value::Timestamp(t) if midnight(&t) => Ok(Value::Date(t.date())),
            Value::TimestampTz(t) if midnight(&t.naive_utc()) => Ok(Value::Date(t.date_naive())),
            Value::Text(t) => match parse_timestamp(&t) {
                Some((dt, _)) if midnight(&dt) => Ok(Value::Date(dt.date())),
                _ => Err(refuse("22007", format!("invalid date {t:?}"))),
            },
            other => Err(refuse(
                "22007",
                format!("{} is not a date without a time of day", as_text(&other)),
            )),
        },
        T::Time => match v {
            Value::Time(t) => Ok(Value::Time(t)),
            Value::Text(t) => NaiveTime::parse_from_str(t.trim(), "%H:%M:%S%.f")
                .map(Value::Time)
                .map_err(|_| refuse("22007", format!("invalid time {t:?}"))),
            other => Err(no_parse(&as_text(&other), to)),
        },
        T::Timestamp => match v {
            Value::Timestamp(t) => Ok(Value::Timestamp(t)),
            Value::TimestampTz(t) => Ok(Value::Timestamp(t.naive_utc())),
            Value::Date(d) => Ok(Value::Timestamp(d.and_time(NaiveTime::MIN))),
            Value::Text(t) => parse_timestamp(&t)
                .map(|(dt, _)| Value::Timestamp(dt))
                .ok_or_else(|| refuse("22007", format!("invalid timestamp {t:?}"))),
            other => Err(no_parse(&as_text(&other), to)),
        },
        T::TimestampTz => match v {
            Value::TimestampTz(t) => Ok(Value::TimestampTz(t)),
            Value::Timestamp(t) => Ok(Value::TimestampTz(t.and_utc())),
            Value::Date(d) => Ok(Value::TimestampTz(d.and_time(NaiveTime::MIN).and_utc())),
            Value::Text(t) => parse_timestamp(&t)
                .map(|(dt, tz)| Value::TimestampTz(tz.unwrap_or_else(|| dt.and_utc())))
                .ok_or_else(|| refuse("22007", format!("invalid timestamp {t:?}"))),
            other => Err(no_parse(&as_text(&other), to)),
        },
        T::Uuid => match v {
            Value::Uuid(u) => Ok(Value::Uuid(u)),
            Value::Text(t) => parse_uuid(&t)
                .map(Value::Uuid)
                .ok_or_else(|| no_parse(&t, to)),
            Value::Bytes(b) => <[u8; 16]>::try_from(b.as_slice())
                .map(Value::Uuid)
                .map_err(|_| no_parse(&format!("{} bytes", b.len()), to)),
            other => Err(no_parse(&as_text(&other), to)),
        },
        T::Json => {
            let t = match v {
                Value::Json(t) | Value::Text(t) => t,
                Value::Bytes(b) => String::from_utf8(b).map_err(|_| no_parse("bytes", to))?,
                other => as_text(&other),
            };
            serde_json::from_str::<serde_json::Value>(&t).map_err(|_| no_parse(&t, to))?;
            Ok(Value::Json(t))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(p: u32, s: u32) -> FerryType {
        FerryType::Decimal {
            precision: Some(p),
            scale: Some(s),
        }
    }

    #[test]
    fn integers_land_or_are_refused_by_range() {
        let i16t = FerryType::Int {
            bits: 16,
            unsigned: false,
        };
        assert_eq!(convert(Value::Int(32767), &i16t), Ok(Value::Int(32767)));
        assert_eq!(
            convert(Value::Int(32768), &i16t).unwrap_err().sqlstate,
            "22003"
        );
        assert_eq!(
            convert(Value::Decimal("12.00".into()), &i16t),
            Ok(Value::Int(12))
        );
        assert!(convert(Value::Decimal("12.5".into()), &i16t).is_err());
        let u64t = FerryType::Int {
            bits: 64,
            unsigned: true,
        };
        assert_eq!(
            convert(Value::Int(-1), &u64t).unwrap_err().sqlstate,
            "22003"
        );
        assert_eq!(
            convert(Value::Decimal("18446744073709551615".into()), &u64t),
            Ok(Value::UInt(u64::MAX))
        );
    }

    #[test]
    fn decimals_never_round() {
        assert_eq!(
            convert(Value::Decimal("1234567890.12".into()), &dec(12, 2)),
            Ok(Value::Decimal("1234567890.12".into()))
        );
        assert_eq!(
            convert(Value::Decimal("1.005".into()), &dec(12, 2))
                .unwrap_err()
                .sqlstate,
            "22003"
        );
        assert_eq!(
            convert(Value::Decimal("12345678901".into()), &dec(12, 2))
                .unwrap_err()
                .sqlstate,
            "22003"
        );
        assert_eq!(
            convert(Value::Float(123.45), &dec(12, 2)),
            Ok(Value::Decimal("123.45".into()))
        );
        assert_eq!(
            convert(Value::Int(100), &dec(12, 2)),
            Ok(Value::Decimal("100".into()))
        );
    }

    #[test]
    fn floats_must_read_back_exactly() {
        let f64t = FerryType::Float { bits: 64 };
        let f32t = FerryType::Float { bits: 32 };
        assert_eq!(
            convert(Value::Decimal("0.1".into()), &f64t),
            Ok(Value::Float(0.1))
        );
        assert!(convert(Value::Decimal("0.10000000000000000001".into()), &f64t).is_err());
        assert!(convert(Value::Float(0.1), &f32t).is_err());
        assert_eq!(convert(Value::Float(0.5), &f32t), Ok(Value::Float(0.5)));
        assert!(convert(Value::Int(i64::MAX), &f64t).is_err());
    }

    #[test]
    fn text_is_measured_in_characters() {
        let t3 = FerryType::Text { max_chars: Some(3) };
        assert_eq!(
            convert(Value::Text("äöü".into()), &t3),
            Ok(Value::Text("äöü".into()))
        );
        assert_eq!(
            convert(Value::Text("abcd".into()), &t3)
                .unwrap_err()
                .sqlstate,
            "22001"
        );
        let any = FerryType::Text { max_chars: None };
        assert_eq!(convert(Value::Int(5), &any), Ok(Value::Text("5".into())));
    }

    #[test]
    fn times_convert_through_utc() {
        let tz = FerryType::TimestampTz;
        let v = convert(Value::Text("2024-01-01 10:00:00+02:00".into()), &tz).unwrap();
        assert_eq!(
            v.canonical().as_deref(),
            Some("2024-01-01 08:00:00.000000+00")
        );
        let naive = convert(v, &FerryType::Timestamp).unwrap();
        assert_eq!(
            naive.canonical().as_deref(),
            Some("2024-01-01 08:00:00.000000")
        );
        let back = convert(naive, &tz).unwrap();
        assert_eq!(
            back.canonical().as_deref(),
            Some("2024-01-01 08:00:00.000000+00")
        );
        assert!(convert(Value::Text("2024-02-30".into()), &FerryType::Date).is_err());
        assert!(convert(Value::Text("2024-01-01 10:00:00".into()), &FerryType::Date).is_err());
        assert_eq!(
            convert(Value::Text("2024-01-01".into()), &FerryType::Date),
            Ok(Value::Date(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()))
        );
    }

    #[test]
    fn json_and_uuid_must_parse() {
        assert!(convert(Value::Text("{\"a\": 1}".into()), &FerryType::Json).is_ok());
        assert_eq!(
            convert(Value::Text("{oops".into()), &FerryType::Json)
                .unwrap_err()
                .sqlstate,
            "22P02"
        );
        assert!(convert(Value::Text("not-a-uuid".into()), &FerryType::Uuid).is_err());
    }
}
