//! Converts a value by reference: most values already are of the type of
//! the column they land in and fit it, so they are kept as they are, with
//! no copy; the others go through `convert::convert` (a copy of the value),
//! so the result is always the one `convert` gives.

use crate::convert::{check_decimal_digits, convert, parse_timestamp, Refusal};
use crate::types::FerryType;
use crate::value::{is_canonical_decimal, Value};

/// Whether `v` lands in a column of type `to` unchanged (what `convert`
/// would return is `v` itself).
fn lands_unchanged(v: &Value, to: &FerryType) -> bool {
    use FerryType as T;
    match (v, to) {
        (Value::Null, _) | (_, T::Other(_)) => true,
        (Value::Bool(_), T::Bool)
        | (Value::Date(_), T::Date)
        | (Value::Time(_), T::Time)
        | (Value::Timestamp(_), T::Timestamp)
        | (Value::TimestampTz(_), T::TimestampTz)
        | (Value::Uuid(_), T::Uuid) => true,
        (Value::Int(i), T::Int { .. }) => to
            .int_range()
            .is_some_and(|(lo, hi)| (lo..=hi).contains(&i128::from(*i))),
        (Value::Float(f), T::Float { bits: 64 }) => !f.is_nan(),
        (Value::Float(f), T::Float { bits: 32 }) => f64::from(*f as f32) == *f,
        (Value::Decimal(d), T::Decimal { precision, scale }) => {
            is_canonical_decimal(d) && check_decimal_digits(d, *precision, *scale, to).is_ok()
        }
        (Value::Text(t), T::Text { max_chars }) => match max_chars {
            None => true,
            // bytes bound characters from above
            Some(max) => t.len() <= *max as usize || t.chars().count() <= *max as usize,
        },
        (Value::Bytes(b), T::Bytes { max_bytes }) => {
            max_bytes.is_none_or(|m| b.len() <= m as usize)
        }
        _ => false,
    }
}

/// Converts `v` to type `to`: None when it lands as it is, the converted
/// value otherwise, or the refusal `convert` gives.
pub fn convert_ref(v: &Value, to: &FerryType) -> Result<Option<Value>, Refusal> {
    if lands_unchanged(v, to) {
        return Ok(None);
    }
    // timestamps stored as text (SQLite): parsed where they lie, as
    // `convert` parses them
    if let Value::Text(t) = v {
        let parsed = match to {
            FerryType::TimestampTz => parse_timestamp(t)
                .map(|(dt, tz)| Value::TimestampTz(tz.unwrap_or_else(|| dt.and_utc()))),
            FerryType::Timestamp => parse_timestamp(t).map(|(dt, _)| Value::Timestamp(dt)),
            _ => None,
        };
        if parsed.is_some() {
            return Ok(parsed);
        }
    }
    convert(v.clone(), to).map(Some)
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;

    /// Whatever `convert_ref` keeps, `convert` returns unchanged; whatever it
    /// converts, it converts as `convert` does.
    #[test]
    fn agrees_with_convert() {
        let ts = NaiveDate::from_ymd_opt(2024, 1, 1)
            .and_then(|d| d.and_hms_micro_opt(1, 2, 3, 4))
            .unwrap();
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(0),
            Value::Int(127),
            Value::Int(128),
            Value::Int(-129),
            Value::Int(i64::MAX),
            Value::UInt(u64::MAX),
            Value::Float(0.1),
            Value::Float(0.5),
            Value::Float(f64::NAN),
            Value::Float(1e300),
            Value::Decimal("12.5".into()),
            Value::Decimal("12.50".into()),
            Value::Decimal("1234567890.12".into()),
            Value::Decimal("12345678901".into()),
            Value::Decimal("1.005".into()),
            Value::Text("äöü".into()),
            Value::Text("abcd".into()),
            Value::Text("12".into()),
            Value::Text("2024-01-01 10:00:00+02".into()),
            Value::Text("2024-01-01 10:00:00.5".into()),
            Value::Text("2024-01-01".into()),
            Value::Bytes(vec![1, 2, 3, 4]),
            Value::Date(ts.date()),
            Value::Time(ts.time()),
            Value::Timestamp(ts),
            Value::TimestampTz(Utc.from_utc_datetime(&ts)),
            Value::Uuid([7; 16]),
            Value::Json("{\"a\": 1}".into()),
        ];
        let types = [
            FerryType::Bool,
            FerryType::Int {
                bits: 8,
                unsigned: false,
            },
            FerryType::Int {
                bits: 64,
                unsigned: true,
            },
            FerryType::Float { bits: 32 },
            FerryType::Float { bits: 64 },
            FerryType::Decimal {
                precision: Some(12),
                scale: Some(2),
            },
            FerryType::Decimal {
                precision: Some(3),
                scale: None,
            },
            FerryType::Decimal {
                precision: None,
                scale: None,
            },
            FerryType::Text { max_chars: Some(3) },
            FerryType::Text { max_chars: None },
            FerryType::Bytes { max_bytes: Some(3) },
            FerryType::Date,
            FerryType::Time,
            FerryType::Timestamp,
            FerryType::TimestampTz,
            FerryType::Uuid,
            FerryType::Json,
            FerryType::Other("point".into()),
        ];
        for v in &values {
            for ty in &types {
                let by_ref = convert_ref(v, ty).map(|c| c.unwrap_or_else(|| v.clone()));
                let by_value = convert(v.clone(), ty);
                match (&by_ref, &by_value) {
                    (Ok(Value::Float(a)), Ok(Value::Float(b))) if a.is_nan() => {
                        assert!(b.is_nan())
                    }
                    _ => assert_eq!(by_ref, by_value, "{v:?} into {ty:?}"),
                }
            }
        }
    }
}
