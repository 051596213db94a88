//! The rows every method writes: Ferry's `items` shape, generated
//! deterministically in memory before any timing, as values of the kind
//! Ferry's connectors carry (`connectors/src/value.rs`: a decimal is its
//! canonical text, a timestamp a `NaiveDateTime`).

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

/// One column value, the subset of Ferry's `Value` that `items` needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A signed integer.
    Int(i64),
    /// An exact decimal in canonical text.
    Decimal(String),
    /// Text.
    Text(String),
    /// A timestamp without zone.
    Timestamp(NaiveDateTime),
}

/// One row, as Ferry's `Row`.
pub type Row = Vec<Value>;

/// The target table's columns, in order.
pub const COLUMNS: [&str; 6] = ["id", "customer_id", "amount", "status", "note", "created_at"];

/// The target table.
pub const ITEMS_DDL: &str = "CREATE TABLE items (
    id bigint NOT NULL PRIMARY KEY,
    customer_id int NOT NULL,
    amount decimal(12,2) NOT NULL,
    status varchar(16) NOT NULL,
    note text NULL,
    created_at datetime(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

const STATUSES: [&str; 5] = ["new", "paid", "shipped", "cancelled", "refunded"];

/// Notes that exercise escaping: every 1,000th row (id ≡ 500 mod 1000)
/// carries one of them instead of the usual 40 characters.
pub const TRICKY_NOTES: [&str; 12] = [
    "tab\there",
    "new\nline",
    "back\\slash",
    "cr\rhere",
    "nul\0byte",
    "NULL",
    "\\N",
    "",
    "trailing backslash\\",
    "quote ' and \"double\"",
    "ünïcödé 🚀 ctrl-z \u{1a}",
    "\\t is not a tab",
];

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Row `g` (1-based): the generator of `shared/bench/peers.sh`, with 10%
/// NULL notes, microseconds in `created_at` and the tricky notes.
pub fn row(g: i64) -> Row {
    let u = g as u64;
    let cents = (g * 37) % 1_000_000;
    let note = if g % 10 == 0 {
        Value::Null
    } else if g % 1000 == 500 {
        Value::Text(TRICKY_NOTES[((g / 1000) as usize) % TRICKY_NOTES.len()].to_string())
    } else {
        // 32 hex characters (as md5 would give), '-', 7 digits: 40 characters
        Value::Text(format!(
            "{:016x}{:016x}-{:07}",
            splitmix(u),
            splitmix(u ^ 0xA5A5),
            g % 1000
        ))
    };
    let base = NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    let at = base
        + TimeDelta::seconds(g % 31_536_000)
        + TimeDelta::microseconds((g * 7) % 1_000_000);
    vec![
        Value::Int(g),
        Value::Int((g * 7919) % 100_000),
        Value::Decimal(format!("{}.{:02}", cents / 100, cents % 100)),
        Value::Text(STATUSES[(g % 5) as usize].to_string()),
        note,
        Value::Timestamp(at),
    ]
}

/// Rows 1..=n.
pub fn rows(n: usize) -> Vec<Row> {
    (1..=n as i64).map(row).collect()
}

/// The SQL that computes the checksum [`expected`] computes in Rust.
pub const CHECKSUM_SQL: &str = "SELECT COUNT(*), CAST(COALESCE(SUM(CRC32(CONCAT_WS('|', id, \
    customer_id, amount, status, IFNULL(CONCAT('v', note), 'n'), \
    DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f')))), 0) AS CHAR) FROM items";

/// The count and checksum a correct load of `rows` gives (see [`CHECKSUM_SQL`]).
pub fn expected(rows: &[Row]) -> (u64, u64) {
    let mut sum = 0u64;
    let mut line = Vec::with_capacity(128);
    for r in rows {
        line.clear();
        for (i, v) in r.iter().enumerate() {
            if i > 0 {
                line.push(b'|');
            }
            match v {
                Value::Null => line.push(b'n'),
                Value::Int(x) => line.extend_from_slice(x.to_string().as_bytes()),
                Value::Decimal(t) => line.extend_from_slice(t.as_bytes()),
                Value::Text(t) if i == 4 => {
                    line.push(b'v');
                    line.extend_from_slice(t.as_bytes());
                }
                Value::Text(t) => line.extend_from_slice(t.as_bytes()),
                Value::Timestamp(t) => line.extend_from_slice(
                    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string().as_bytes(),
                ),
            }
        }
        sum += u64::from(crc32fast::hash(&line));
    }
    (rows.len() as u64, sum)
}
