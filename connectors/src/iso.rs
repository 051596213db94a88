//! Dates, times and timestamps in their common ISO text forms, parsed and
//! formatted by hand on the copy path (chrono's format strings cost more
//! than the rest of a value's trip). Only the plain forms are handled here:
//! anything else (BC dates, years past 9999, `infinity`, leap seconds) comes
//! back as None and the caller uses chrono, so results never differ from it.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};

/// Digits of `b` as a number, when all of them are ASCII digits.
fn num(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// `YYYY-MM-DD` at the start of `b`.
fn date_at(b: &[u8]) -> Option<NaiveDate> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = num(&b[0..4])?;
    NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, num(&b[5..7])?, num(&b[8..10])?)
}

/// `HH:MM:SS[.f…]` at the start of `b`, and the bytes it took.
fn time_at(b: &[u8]) -> Option<(NaiveTime, usize)> {
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (num(&b[0..2])?, num(&b[3..5])?, num(&b[6..8])?);
    let mut used = 8;
    let mut nanos = 0u32;
    if b.get(8) == Some(&b'.') {
        let digits = b[9..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(&b[9..9 + digits])? * 10u32.pow(9 - digits as u32);
        used = 9 + digits;
    }
    Some((NaiveTime::from_hms_nano_opt(h, m, s, nanos)?, used))
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(t: &str) -> Option<NaiveDate> {
    let b = t.as_bytes();
    (b.len() == 10).then(|| date_at(b)).flatten()
}

/// Parses `HH:MM:SS[.f…]`.
pub fn parse_time(t: &str) -> Option<NaiveTime> {
    let b = t.as_bytes();
    time_at(b)
        .filter(|(_, used)| *used == b.len())
        .map(|(t, _)| t)
}

/// `YYYY-MM-DD HH:MM:SS[.f…]` at the start of `b`, and the bytes it took.
fn timestamp_at(b: &[u8]) -> Option<(NaiveDateTime, usize)> {
    if b.len() < 19 || b[10] != b' ' {
        return None;
    }
    let d = date_at(b)?;
    let (t, used) = time_at(&b[11..])?;
    Some((d.and_time(t), 11 + used))
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f…]`.
pub fn parse_timestamp(t: &str) -> Option<NaiveDateTime> {
    let b = t.as_bytes();
    timestamp_at(b)
        .filter(|(_, used)| *used == b.len())
        .map(|(t, _)| t)
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f…]±HH[:MM]` (PostgreSQL's `timestamptz`
/// output) as an instant.
pub fn parse_timestamptz(t: &str) -> Option<DateTime<Utc>> {
    let b = t.as_bytes();
    let (naive, used) = timestamp_at(b)?;
    let zone = &b[used..];
    let sign = match zone.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let secs = match zone.len() {
        3 => num(&zone[1..3])? * 3600,
        6 if zone[3] == b':' => num(&zone[1..3])? * 3600 + num(&zone[4..6])? * 60,
        _ => return None,
    };
    let secs = sign * i32::try_from(secs).ok()?;
    let offset = FixedOffset::east_opt(secs)?;
    naive
        .and_local_timezone(offset)
        .single()
        .map(|dt| dt.with_timezone(&Utc))
}

fn push2(out: &mut String, n: u32) {
    out.push(char::from(b'0' + (n / 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

fn push_digits(out: &mut String, n: u32, width: u32) {
    for k in (0..width).rev() {
        out.push(char::from(b'0' + ((n / 10u32.pow(k)) % 10) as u8));
    }
}

/// Appends `YYYY-MM-DD`; false (nothing appended) outside years 0–9999.
fn push_date(out: &mut String, d: &NaiveDate) -> bool {
    use chrono::Datelike;
    let Ok(y) = u32::try_from(d.year()) else {
        return false;
    };
    if y > 9999 {
        return false;
    }
    push_digits(out, y, 4);
    out.push('-');
    push2(out, d.month());
    out.push('-');
    push2(out, d.day());
    true
}

/// Appends `HH:MM:SS` and the fraction as chrono's `%.f` writes it (none,
/// 3, 6 or 9 digits); false (nothing appended) for a leap second.
fn push_time(out: &mut String, t: &NaiveTime) -> bool {
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        return false;
    }
    push2(out, t.hour());
    out.push(':');
    push2(out, t.minute());
    out.push(':');
    push2(out, t.second());
    let (digits, width) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    if width > 0 {
        out.push('.');
        push_digits(out, digits, width);
    }
    true
}

/// A date as chrono's `%Y-%m-%d` writes it.
pub fn format_date(d: &NaiveDate) -> String {
    let mut out = String::with_capacity(10);
    if push_date(&mut out, d) {
        return out;
    }
    d.format("%Y-%m-%d").to_string()
}

/// A time as chrono's `%H:%M:%S%.f` writes it.
pub fn format_time(t: &NaiveTime) -> String {
    let mut out = String::with_capacity(18);
    if push_time(&mut out, t) {
        return out;
    }
    t.format("%H:%M:%S%.f").to_string()
}

/// A timestamp as chrono's `%Y-%m-%d %H:%M:%S%.f` writes it, then `suffix`.
pub fn format_timestamp(t: &NaiveDateTime, suffix: &str) -> String {
    let mut out = String::with_capacity(32);
    if push_date(&mut out, &t.date()) {
        out.push(' ');
        if push_time(&mut out, &t.time()) {
            out.push_str(suffix);
            return out;
        }
    }
    format!("{}{suffix}", t.format("%Y-%m-%d %H:%M:%S%.f"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_chrono_does() {
        for t in [
            "2024-01-01 00:00:01",
            "2024-02-29 23:59:59.5",
            "1999-12-31 12:00:00.123456",
            "0001-01-01 00:00:00.000001",
        ] {
            let chrono = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").unwrap();
            assert_eq!(parse_timestamp(t), Some(chrono), "{t}");
        }
        for t in [
            "2024-01-01 00:00:01+00",
            "2024-01-01 10:00:00.25+02",
            "2024-01-01 10:00:00-05:30",
        ] {
            let chrono = DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z")
                .map(|d| d.with_timezone(&Utc))
                .ok();
            assert_eq!(parse_timestamptz(t), chrono, "{t}");
        }
        // an offset with seconds (local mean time) is left to chrono
        assert_eq!(parse_timestamptz("1900-01-01 00:00:00+00:19:32"), None);
        assert_eq!(
            parse_date("2024-03-01"),
            NaiveDate::from_ymd_opt(2024, 3, 1)
        );
        assert_eq!(
            parse_time("08:30:00.5"),
            NaiveTime::from_hms_milli_opt(8, 30, 0, 500)
        );
        for bad in [
            "2024-02-30 00:00:00",
            "infinity",
            "0044-03-15 00:00:00 BC",
            "12345-01-01 00:00:00",
            "2024-01-01 00:00:00.",
            "2024-01-01 00:00:60",
            "2024-01-01T00:00:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
            assert_eq!(parse_timestamptz(&format!("{bad}+00")), None, "{bad}");
        }
        assert_eq!(parse_timestamptz("2024-01-01 00:00:00"), None);
        assert_eq!(parse_timestamptz("2024-01-01 00:00:00+0"), None);
        assert_eq!(parse_date("2024-1-01"), None);
    }

    #[test]
    fn formats_as_chrono_does() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        for nanos in [
            0,
            500_000_000,
            123_000_000,
            123_456_000,
            1_000,
            123_456_789,
            7,
        ] {
            let t = NaiveTime::from_hms_nano_opt(3, 4, 5, nanos).unwrap();
            let dt = d.and_time(t);
            assert_eq!(
                format_timestamp(&dt, "+00:00"),
                dt.format("%Y-%m-%d %H:%M:%S%.f+00:00").to_string()
            );
            assert_eq!(format_time(&t), t.format("%H:%M:%S%.f").to_string());
        }
        for y in [1, 999, 9999, 10_000, -5] {
            let d = NaiveDate::from_ymd_opt(y, 12, 31).unwrap();
            assert_eq!(format_date(&d), d.format("%Y-%m-%d").to_string());
            let dt = d.and_hms_opt(23, 59, 59).unwrap();
            assert_eq!(
                format_timestamp(&dt, ""),
                dt.format("%Y-%m-%d %H:%M:%S%.f").to_string()
            );
        }
        let leap = NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
        assert_eq!(format_time(&leap), leap.format("%H:%M:%S%.f").to_string());
    }
}
