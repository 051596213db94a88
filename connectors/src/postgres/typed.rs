//! PostgreSQL as one end of a copy between databases of different kinds:
//! a chunk is read as COPY text (every type has an exact text form in an ISO
//! session) and parsed into values by each column's Ferry type; rows are
//! written with binary COPY encoded from the values by each target column's
//! PostgreSQL type.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use ferry_common::errors::{classify_pg, DbFailure, ErrorClass};
use ferry_common::proto::TableRef;
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;

use super::rejects::decode_field;
use super::select::ChunkSelect;
use super::sql::{quote_list, quote_table};
use crate::iso;
use crate::rows::{BatchSender, Batcher, Row};
use crate::types::FerryType;
use crate::value::{into_canonical_decimal, parse_uuid, Value};

fn bad(i: usize, text: &str, what: &str) -> DbFailure {
    DbFailure {
        class: ErrorClass::Data,
        sqlstate: Some("22P02".into()),
        message: format!("column {}: cannot read {text:?} as {what}", i + 1),
    }
}

/// Parses one COPY text field of column `i` as a value of type `ty`.
pub fn parse_field(i: usize, field: &str, ty: &FerryType) -> Result<Value, DbFailure> {
    // a field without a backslash is its own text: no unescaping, and no
    // copy unless the value is text
    let t: Cow<'_, str> = if field.contains('\\') {
        match decode_field(field) {
            Some(t) => Cow::Owned(t),
            None => return Ok(Value::Null),
        }
    } else {
        Cow::Borrowed(field)
    };
    Ok(match ty {
        FerryType::Bool => Value::Bool(t == "t"),
        FerryType::Int { .. } => Value::Int(t.parse().map_err(|_| bad(i, &t, "an integer"))?),
        // a `real` prints its shortest f32 form ("0.1"): read it as the f32
        // it is, or the wider f64 would not fit a 32-bit target exactly
        FerryType::Float { bits: 32 } => Value::Float(f64::from(
            t.parse::<f32>().map_err(|_| bad(i, &t, "a float"))?,
        )),
        FerryType::Float { .. } => Value::Float(t.parse().map_err(|_| bad(i, &t, "a float"))?),
        FerryType::Decimal { .. } => Value::Decimal(into_canonical_decimal(t.into_owned())),
        FerryType::Text { .. } | FerryType::Other(_) => Value::Text(t.into_owned()),
        FerryType::Json => Value::Json(t.into_owned()),
        FerryType::Bytes { .. } => {
            let hex = t
                .strip_prefix("\\x")
                .ok_or_else(|| bad(i, &t, "hex bytes"))?;
            let mut out = Vec::with_capacity(hex.len() / 2);
            for k in (0..hex.len()).step_by(2) {
                let byte = hex
                    .get(k..k + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad(i, &t, "hex bytes"))?;
                out.push(byte);
            }
            Value::Bytes(out)
        }
        FerryType::Date => match iso::parse_date(&t) {
            Some(d) => Value::Date(d),
            None => match NaiveDate::parse_from_str(&t, "%Y-%m-%d") {
                Ok(d) => Value::Date(d),
                Err(_) => Value::Text(t.into_owned()), // infinity, BC: converted or refused later
            },
        },
        FerryType::Time => match iso::parse_time(&t) {
            Some(v) => Value::Time(v),
            None => match NaiveTime::parse_from_str(&t, "%H:%M:%S%.f") {
                Ok(v) => Value::Time(v),
                Err(_) => Value::Text(t.into_owned()),
            },
        },
        FerryType::Timestamp => match iso::parse_timestamp(&t) {
            Some(v) => Value::Timestamp(v),
            None => match NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f") {
                Ok(v) => Value::Timestamp(v),
                Err(_) => Value::Text(t.into_owned()),
            },
        },
        FerryType::TimestampTz => match iso::parse_timestamptz(&t) {
            Some(v) => Value::TimestampTz(v),
            None => match DateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f%#z") {
                Ok(v) => Value::TimestampTz(v.with_timezone(&Utc)),
                Err(_) => Value::Text(t.into_owned()),
            },
        },
        FerryType::Uuid => match parse_uuid(&t) {
            Some(u) => Value::Uuid(u),
            None => Value::Text(t.into_owned()),
        },
    })
}

/// Streams the chunk's rows (no conversions) as batches of values typed by
/// `types`. Inside the chunk's read transaction (`copy::begin_read`).
pub async fn read_chunk(
    source: &Client,
    chunk: &ChunkSelect<'_>,
    types: &[FerryType],
    tx: BatchSender,
) -> Result<u64, DbFailure> {
    let mut batcher = Batcher::new(tx);
    let (select, _) = chunk.text();
    let read = async {
        let stream = source
            .copy_out(format!("COPY ({select}) TO STDOUT").as_str())
            .await
            .map_err(|e| classify_pg(&e))?;
        futures::pin_mut!(stream);
        let mut pending = BytesMut::new();
        while let Some(part) = stream.next().await {
            pending.extend_from_slice(&part.map_err(|e| classify_pg(&e))?);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line = pending.split_to(pos + 1);
                let text = String::from_utf8_lossy(&line[..pos]);
                let mut row = Vec::with_capacity(types.len());
                for (i, (field, ty)) in text.split('\t').zip(types).enumerate() {
                    row.push(parse_field(i, field, ty)?);
                }
                if !batcher.push(row).await {
                    return Ok(());
                }
            }
        }
        Ok::<_, DbFailure>(())
    }
    .await;
    match read {
        Ok(()) => Ok(batcher.finish().await),
        Err(f) => {
            batcher.fail(f.clone()).await;
            Err(f)
        }
    }
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * 86_400_000_000;

/// Appends PostgreSQL's binary `numeric` form of a canonical decimal:
/// base-10000 groups, the integer part cut from the right and the fraction
/// from the left, without leading or trailing zero groups.
fn put_numeric(buf: &mut BytesMut, canonical: &str) {
    let neg = canonical.starts_with('-');
    let d = canonical.trim_start_matches('-');
    let (int, frac) = d.split_once('.').unwrap_or((d, ""));
    let int = int.trim_start_matches('0').as_bytes();
    let frac_b = frac.as_bytes();
    // the digits as if the integer part were padded on the left and the
    // fraction on the right to whole groups of four
    let lead = (4 - int.len() % 4) % 4;
    let int_groups = (int.len() + lead) / 4;
    let groups = int_groups + frac_b.len().div_ceil(4);
    let digit = |p: usize| -> i16 {
        let b = if p < lead {
            b'0'
        } else if p - lead < int.len() {
            int[p - lead]
        } else {
            frac_b.get(p - lead - int.len()).copied().unwrap_or(b'0')
        };
        if b.is_ascii_digit() {
            i16::from(b - b'0')
        } else {
            0
        }
    };
    let group = |g: usize| (0..4).fold(0i16, |acc, k| acc * 10 + digit(4 * g + k));
    let first = (0..groups).find(|g| group(*g) != 0);
    let last = (0..groups).rev().find(|g| group(*g) != 0);
    let (first, count, weight) = match (first, last) {
        (Some(f), Some(l)) => (f, l - f + 1, int_groups as i16 - 1 - f as i16),
        _ => (0, 0, 0),
    };
    buf.put_i32(8 + 2 * count as i32);
    buf.put_i16(count as i16);
    buf.put_i16(weight);
    buf.put_u16(if neg && count > 0 { 0x4000 } else { 0 });
    buf.put_i16(frac.len() as i16);
    for g in first..first + count {
        buf.put_i16(group(g));
    }
}

fn put_len_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn micros_since_pg_epoch(t: &NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros() - PG_EPOCH_MICROS
}

/// Appends one value in the binary COPY form of PostgreSQL type `pg_type`
/// (the target column's `format_type` without modifier). The value has
/// already been converted to the column's Ferry type.
fn put_value(buf: &mut BytesMut, v: &Value, pg_type: &str) -> Result<(), DbFailure> {
    let mismatch = || {
        DbFailure::permanent(format!(
            "cannot write {v:?} into a PostgreSQL {pg_type} column"
        ))
    };
    match v {
        Value::Null => buf.put_i32(-1),
        Value::Bool(b) => {
            buf.put_i32(1);
            buf.put_u8(u8::from(*b));
        }
        Value::Int(i) => match pg_type {
            "smallint" => {
                buf.put_i32(2);
                buf.put_i16(*i as i16);
            }
            "integer" => {
                buf.put_i32(4);
                buf.put_i32(*i as i32);
            }
            "bigint" => {
                buf.put_i32(8);
                buf.put_i64(*i);
            }
            "numeric" => put_numeric(buf, &i.to_string()),
            _ => return Err(mismatch()),
        },
        Value::UInt(u) => put_numeric(buf, &u.to_string()),
        Value::Float(f) => match pg_type {
            "real" => {
                buf.put_i32(4);
                buf.put_f32(*f as f32);
            }
            _ => {
                buf.put_i32(8);
                buf.put_f64(*f);
            }
        },
        Value::Decimal(d) => put_numeric(buf, d),
        Value::Text(t) => put_len_bytes(buf, t.as_bytes()),
        Value::Json(t) if pg_type == "jsonb" => {
            buf.put_i32(t.len() as i32 + 1);
            buf.put_u8(1);
            buf.put_slice(t.as_bytes());
        }
        Value::Json(t) => put_len_bytes(buf, t.as_bytes()),
        Value::Bytes(b) => put_len_bytes(buf, b),
        Value::Date(d) => {
            buf.put_i32(4);
            let days = d.signed_duration_since(NaiveDate::default()).num_days() - PG_EPOCH_DAYS;
            buf.put_i32(days as i32);
        }
        Value::Time(t) => {
            buf.put_i32(8);
            let micros = i64::from(t.num_seconds_from_midnight()) * 1_000_000
                + i64::from(t.nanosecond() / 1000);
            buf.put_i64(micros);
        }
        Value::Timestamp(t) => {
            buf.put_i32(8);
            buf.put_i64(micros_since_pg_epoch(t));
        }
        Value::TimestampTz(t) => {
            buf.put_i32(8);
            buf.put_i64(t.timestamp_micros() - PG_EPOCH_MICROS);
        }
        Value::Uuid(u) => put_len_bytes(buf, u),
    }
    Ok(())
}

/// Rows written with binary COPY into one table's columns.
#[derive(Debug, Clone)]
pub struct CopyIn {
    sql: String,
    pg_types: Vec<String>,
}

impl CopyIn {
    /// Writes into `table`'s `columns`, whose PostgreSQL types (without
    /// modifiers) are `pg_types`.
    pub fn new(table: &TableRef, columns: &[&str], pg_types: Vec<String>) -> Self {
        Self {
            sql: format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                quote_table(table),
                quote_list(columns.iter().copied())
            ),
            pg_types,
        }
    }

    /// Copies `rows` in one COPY; returns the rows written.
    pub async fn rows(&self, target: &Client, rows: &[Row]) -> Result<u64, DbFailure> {
        let sink = target
            .copy_in::<_, Bytes>(self.sql.as_str())
            .await
            .map_err(|e| classify_pg(&e))?;
        futures::pin_mut!(sink);
        let mut buf = BytesMut::with_capacity(256 * 1024);
        buf.put_slice(b"PGCOPY\n\xff\r\n\0");
        buf.put_i32(0);
        buf.put_i32(0);
        for row in rows {
            buf.put_i16(row.len() as i16);
            for (v, t) in row.iter().zip(&self.pg_types) {
                put_value(&mut buf, v, t)?;
            }
            if buf.len() >= 256 * 1024 {
                sink.send(buf.split().freeze())
                    .await
                    .map_err(|e| classify_pg(&e))?;
            }
        }
        buf.put_i16(-1);
        sink.send(buf.split().freeze())
            .await
            .map_err(|e| classify_pg(&e))?;
        sink.as_mut().finish().await.map_err(|e| classify_pg(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(d: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_numeric(&mut b, d);
        b.to_vec()
    }

    #[test]
    fn a_real_is_read_as_the_f32_it_prints() {
        let real = FerryType::Float { bits: 32 };
        let v = parse_field(0, "0.1", &real).unwrap();
        assert_eq!(v, Value::Float(f64::from(0.1f32)));
        // so it lands exactly in another database's 32-bit float
        assert!(crate::convert::convert(v, &real).is_ok());
    }

    /// The encoder before it stopped allocating, as the reference.
    fn numeric_reference(canonical: &str) -> Vec<u8> {
        let neg = canonical.starts_with('-');
        let d = canonical.trim_start_matches('-');
        let (int, frac) = d.split_once('.').unwrap_or((d, ""));
        let int = int.trim_start_matches('0');
        let pad_int = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
        let pad_frac = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
        let mut groups: Vec<i16> = pad_int
            .as_bytes()
            .chunks(4)
            .chain(pad_frac.as_bytes().chunks(4))
            .map(|g| std::str::from_utf8(g).unwrap().parse().unwrap())
            .collect();
        let mut weight = (pad_int.len() / 4) as i16 - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        let mut buf = BytesMut::new();
        buf.put_i32(8 + 2 * groups.len() as i32);
        buf.put_i16(groups.len() as i16);
        buf.put_i16(weight);
        buf.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
        buf.put_i16(frac.len() as i16);
        for g in groups {
            buf.put_i16(g);
        }
        buf.to_vec()
    }

    #[test]
    fn numerics_encode_as_the_reference_does() {
        for d in [
            "0",
            "1",
            "-1",
            "9999",
            "10000",
            "123456789",
            "0.5",
            "-0.0001",
            "0.00001",
            "100000000.00000001",
            "12.34",
            "-999.99",
            "1234.5678",
            "20000",
            "0.1234",
            "987654321012345678901234567890.123456789",
        ] {
            assert_eq!(numeric(d), numeric_reference(d), "{d}");
        }
    }

    #[test]
    fn numerics_encode_in_base_10000() {
        // 12345.67: groups [1, 2345, 6700], weight 1, dscale 2
        assert_eq!(
            numeric("12345.67"),
            vec![0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 2, 0, 1, 0x09, 0x29, 0x1a, 0x2c]
        );
        // 0.0001: groups [1], weight -1
        assert_eq!(
            numeric("0.0001"),
            vec![0, 0, 0, 10, 0, 1, 0xff, 0xff, 0, 0, 0, 4, 0, 1]
        );
        // -5: sign negative
        assert_eq!(
            numeric("-5"),
            vec![0, 0, 0, 10, 0, 1, 0, 0, 0x40, 0, 0, 0, 0, 5]
        );
        // 0: no groups
        assert_eq!(numeric("0"), vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn fields_parse_by_type() {
        assert_eq!(parse_field(0, "\\N", &FerryType::Date), Ok(Value::Null));
        assert_eq!(
            parse_field(0, "2024-01-01 08:00:00+00", &FerryType::TimestampTz)
                .unwrap()
                .canonical()
                .as_deref(),
            Some("2024-01-01 08:00:00.000000+00")
        );
        assert_eq!(
            parse_field(0, "\\\\x0aff", &FerryType::Bytes { max_bytes: None }),
            Ok(Value::Bytes(vec![0x0a, 0xff]))
        );
        assert_eq!(
            parse_field(
                0,
                "12.50",
                &FerryType::Decimal {
                    precision: None,
                    scale: None
                }
            ),
            Ok(Value::Decimal("12.5".into()))
        );
    }
}
