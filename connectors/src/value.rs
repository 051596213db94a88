//! Values as they travel between databases of different kinds: one typed
//! value per column of a row, read by the source's connector and written by
//! the target's. A value's canonical form is the same whichever database it
//! came from, so verify can digest rows on both sides alike.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// One column of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer (up to 64 bits).
    Int(i64),
    /// An unsigned integer beyond `i64` (MySQL `BIGINT UNSIGNED`).
    UInt(u64),
    /// A binary floating-point number.
    Float(f64),
    /// An exact decimal in canonical text: `-?digits(.digits)?`, no exponent.
    Decimal(String),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A calendar date.
    Date(NaiveDate),
    /// A time of day without zone.
    Time(NaiveTime),
    /// A timestamp without zone.
    Timestamp(NaiveDateTime),
    /// An instant (timestamp with zone), kept in UTC.
    TimestampTz(DateTime<Utc>),
    /// A UUID.
    Uuid([u8; 16]),
    /// A JSON document, as text.
    Json(String),
}

/// Formats a UUID in its canonical hyphenated lower-case form.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Parses a UUID in hyphenated or plain hex form.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    let hex = hex.strip_prefix('{').unwrap_or(&hex).trim_end_matches('}');
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A decimal's canonical text: sign, integer digits without leading zeros,
/// and fraction digits without trailing zeros (`-0012.3400` is `-12.34`,
/// `0.0` is `0`). None when `text` is not a plain decimal number.
pub fn canonical_decimal(text: &str) -> Option<String> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(int.len() + frac.len() + 3);
    if neg && !(int.is_empty() && frac.is_empty()) {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// Whether `text` already is a canonical decimal (as `canonical_decimal`
/// writes it), so it can be kept without a copy.
pub fn is_canonical_decimal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let int_ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'));
    let frac_ok = match frac {
        None => true,
        Some(f) => !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) && !f.ends_with('0'),
    };
    // "-0" is written "0"
    let signed_zero = text.starts_with('-') && int == "0" && frac.is_none();
    int_ok && frac_ok && !signed_zero
}

/// A decimal read as `text`, in canonical form (kept as it is, without a
/// copy, when it already is canonical; as read when it is not a number).
pub fn into_canonical_decimal(mut text: String) -> String {
    if is_canonical_decimal(&text) {
        return text;
    }
    // the common case, a fixed scale ("12.50", "100.00"): cut the zeros
    // after the point in place
    if text.contains('.') {
        let cut = text.trim_end_matches('0');
        let cut = cut.strip_suffix('.').unwrap_or(cut);
        if is_canonical_decimal(cut) {
            text.truncate(cut.len());
            return text;
        }
    }
    canonical_decimal(&text).unwrap_or(text)
}

/// Digits before and after the point of a canonical decimal.
pub fn decimal_digits(canonical: &str) -> (usize, usize) {
    let d = canonical.trim_start_matches('-');
    let (int, frac) = d.split_once('.').unwrap_or((d, ""));
    let int = if int == "0" { 0 } else { int.len() };
    (int, frac.len())
}

impl Value {
    /// Whether the value is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value's canonical text, equal for equal values whichever database
    /// they came from (NULL is None): integers in decimal, decimals without
    /// redundant zeros, floats in shortest round-trip form, timestamps in ISO
    /// form with microseconds (instants in UTC), bytes in hex, UUIDs
    /// hyphenated.
    pub fn canonical(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{}", *f as i64)
                } else {
                    format!("{f}")
                }
            }
            Value::Decimal(d) => canonical_decimal(d).unwrap_or_else(|| d.clone()),
            Value::Text(t) | Value::Json(t) => t.clone(),
            Value::Bytes(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for x in b {
                    let _ = write!(s, "{x:02x}");
                }
                s
            }
            Value::Date(d) => crate::iso::format_date(d),
            Value::Time(t) => t.format("%H:%M:%S%.6f").to_string(),
            Value::Timestamp(t) => t.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            Value::TimestampTz(t) => t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            Value::Uuid(u) => uuid_text(u),
        })
    }
}

/// An order-independent digest of rows: their count and the wrapping sum of
/// a 64-bit hash of each row's canonical values, so two sides that hold the
/// same rows in any order agree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowDigest {
    /// Rows digested.
    pub rows: u64,
    /// Sum of the rows' hashes.
    pub sum: u64,
}

impl RowDigest {
    /// Adds one row.
    pub fn add(&mut self, row: &[Value]) {
        // FNV-1a over each value's canonical text, NULL and the separator
        // distinct from any text
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for v in row {
            match v.canonical() {
                Some(t) => {
                    feed(&[1]);
                    feed(t.as_bytes());
                }
                None => feed(&[0]),
            }
            feed(&[0xff]);
        }
        self.rows += 1;
        self.sum = self.sum.wrapping_add(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_have_one_canonical_form() {
        assert_eq!(canonical_decimal("-0012.3400").as_deref(), Some("-12.34"));
        assert_eq!(canonical_decimal("0.0").as_deref(), Some("0"));
        assert_eq!(canonical_decimal("-0.00").as_deref(), Some("0"));
        assert_eq!(canonical_decimal(".5").as_deref(), Some("0.5"));
        assert_eq!(canonical_decimal("100").as_deref(), Some("100"));
        assert_eq!(canonical_decimal("1e5"), None);
        assert_eq!(canonical_decimal("abc"), None);
        assert_eq!(decimal_digits("-12.340"), (2, 3));
        for t in [
            "-0012.3400",
            "0.0",
            "-0.00",
            ".5",
            "100",
            "12.50",
            "-0",
            "0",
            "-0.5",
            "7.",
            "+3",
            " 1",
            "1e5",
            "",
            "-",
            "00",
            "0.10",
            "12.5",
            "-12.34",
            "1..",
            "1.0.",
            "100.00",
            "-0.50",
            "10.",
            "0.",
        ] {
            let canonical = canonical_decimal(t);
            assert_eq!(
                is_canonical_decimal(t),
                canonical.as_deref() == Some(t),
                "{t}"
            );
            assert_eq!(
                into_canonical_decimal(t.to_string()),
                canonical.unwrap_or(t.into())
            );
        }
        assert_eq!(decimal_digits("0.25"), (0, 2));
    }

    #[test]
    fn uuids_round_trip() {
        let u = parse_uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap();
        assert_eq!(uuid_text(&u), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert!(parse_uuid("xyz").is_none());
    }

    #[test]
    fn digests_ignore_order_and_see_changes() {
        let a = vec![Value::Int(1), Value::Text("x".into())];
        let b = vec![Value::Int(2), Value::Null];
        let (mut d1, mut d2) = (RowDigest::default(), RowDigest::default());
        d1.add(&a);
        d1.add(&b);
        d2.add(&b);
        d2.add(&a);
        assert_eq!(d1, d2);
        let mut d3 = RowDigest::default();
        d3.add(&a);
        d3.add(&[Value::Int(2), Value::Text(String::new())]);
        assert_ne!(d1, d3, "NULL and empty text differ");
        assert_eq!(
            Value::Decimal("12.50".into()).canonical(),
            Value::Decimal("12.5".into()).canonical()
        );
        assert_eq!(Value::Float(100.0).canonical().as_deref(), Some("100"));
    }
}
