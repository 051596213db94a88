//! Text encodings of rows: the tab-separated form `LOAD DATA` reads with
//! its default `FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED
//! BY '\n'` (NULL is `\N`), and SQL literals for text-protocol `INSERT`s.

use chrono::{Datelike, NaiveDateTime, Timelike};

use crate::data::{Row, Value};

/// `LOAD DATA`'s clauses matching [`tsv_row`].
pub const TSV_CLAUSES: &str = "CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' \
    ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'";

/// Appends `t` as `YYYY-MM-DD HH:MM:SS.ffffff`.
pub fn timestamp(out: &mut Vec<u8>, t: &NaiveDateTime) {
    let mut buf = [0u8; 26];
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year() as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 6, t.nanosecond() / 1000);
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b' ';
    buf[13] = b':';
    buf[16] = b':';
    buf[19] = b'.';
    out.extend_from_slice(&buf);
}

fn int(out: &mut Vec<u8>, x: i64) {
    if x < 0 {
        out.push(b'-');
    }
    let mut v = x.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// Appends text escaped for `LOAD DATA … ESCAPED BY '\\'`.
fn tsv_text(out: &mut Vec<u8>, t: &str) {
    for &b in t.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            _ => out.push(b),
        }
    }
}

/// Appends one row as a line of tab-separated values.
pub fn tsv_row(out: &mut Vec<u8>, row: &Row) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match v {
            Value::Null => out.extend_from_slice(b"\\N"),
            Value::Int(x) => int(out, *x),
            Value::Decimal(t) | Value::Text(t) => tsv_text(out, t),
            Value::Timestamp(t) => timestamp(out, t),
        }
    }
    out.push(b'\n');
}

/// Appends one value as a SQL literal (the server's default `sql_mode`, in
/// which backslash escapes; as `mysql_real_escape_string`).
fn sql_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"NULL"),
        Value::Int(x) => int(out, *x),
        Value::Decimal(t) => out.extend_from_slice(t.as_bytes()),
        Value::Text(t) => {
            out.push(b'\'');
            for &b in t.as_bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\'' => out.extend_from_slice(b"\\'"),
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    0 => out.extend_from_slice(b"\\0"),
                    0x1a => out.extend_from_slice(b"\\Z"),
                    _ => out.push(b),
                }
            }
            out.push(b'\'');
        }
        Value::Timestamp(t) => {
            out.push(b'\'');
            timestamp(out, t);
            out.push(b'\'');
        }
    }
}

/// Appends one row as `(v, v, …)`.
pub fn sql_row(out: &mut Vec<u8>, row: &Row) {
    out.push(b'(');
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        sql_value(out, v);
    }
    out.push(b')');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_escapes_and_nulls() {
        let mut out = Vec::new();
        tsv_row(
            &mut out,
            &vec![Value::Int(-3), Value::Null, Value::Text("a\tb\\c\nd\0".into())],
        );
        assert_eq!(out, b"-3\t\\N\ta\\tb\\\\c\\nd\\0\n");
    }

    #[test]
    fn timestamps_have_microseconds() {
        let t = chrono::NaiveDate::from_ymd_opt(2024, 2, 3)
            .and_then(|d| d.and_hms_micro_opt(4, 5, 6, 7))
            .unwrap();
        let mut out = Vec::new();
        timestamp(&mut out, &t);
        assert_eq!(out, b"2024-02-03 04:05:06.000007");
    }
}
