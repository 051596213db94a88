//! MySQL and MariaDB column types (`COLUMN_TYPE` as `information_schema`
//! and `SHOW COLUMNS` spell them) in Ferry's terms, and back (for
//! `--create-table`).

use crate::types::FerryType;

/// The numbers in a type's parentheses (`decimal(12,2)` gives [12, 2]).
fn args(t: &str) -> Vec<u32> {
    t.split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inner, _)| {
            inner
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What a MySQL column type means in Ferry's terms.
pub fn ferry_type(column_type: &str) -> FerryType {
    let t = column_type.trim().to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or_default();
    let unsigned = t.contains("unsigned");
    let a = args(&t);
    let int = |bits: u8| FerryType::Int { bits, unsigned };
    match base {
        "tinyint" if a.first() == Some(&1) && !unsigned => FerryType::Bool,
        "bool" | "boolean" => FerryType::Bool,
        "tinyint" => int(8),
        "smallint" | "year" => int(16),
        "mediumint" => int(24),
        "int" | "integer" => int(32),
        "bigint" => int(64),
        "float" => FerryType::Float { bits: 32 },
        "double" | "real" => FerryType::Float { bits: 64 },
        "decimal" | "numeric" | "dec" | "fixed" => FerryType::Decimal {
            precision: Some(a.first().copied().unwrap_or(10)),
            scale: Some(a.get(1).copied().unwrap_or(0)),
        },
        "char" | "varchar" => FerryType::Text {
            max_chars: a.first().copied(),
        },
        "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set" => {
            FerryType::Text { max_chars: None }
        }
        "binary" | "varbinary" => FerryType::Bytes {
            max_bytes: a.first().copied(),
        },
        "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit" => {
            FerryType::Bytes { max_bytes: None }
        }
        "date" => FerryType::Date,
        "time" => FerryType::Time,
        "datetime" => FerryType::Timestamp,
        "timestamp" => FerryType::TimestampTz,
        "json" => FerryType::Json,
        "uuid" => FerryType::Uuid,
        _ => FerryType::Other(column_type.to_string()),
    }
}

/// A MySQL column type that holds `t` exactly (for `--create-table`).
pub fn column_type(t: &FerryType) -> String {
    match t {
        FerryType::Bool => "tinyint(1)".into(),
        FerryType::Int { bits, unsigned } => {
            let base = match bits {
                8 => "tinyint",
                16 => "smallint",
                24 => "mediumint",
                32 => "int",
                _ => "bigint",
            };
            if *unsigned {
                format!("{base} unsigned")
            } else {
                base.to_string()
            }
        }
        FerryType::Float { bits: 32 } => "float".into(),
        FerryType::Float { .. } => "double".into(),
        FerryType::Decimal {
            precision: Some(p),
            scale,
        } if *p <= 65 => format!("decimal({p},{})", scale.unwrap_or(0)),
        // unbounded decimals keep every digit as text
        FerryType::Decimal { .. } => "varchar(1000)".into(),
        FerryType::Text { max_chars: Some(n) } if *n <= 16_383 => format!("varchar({n})"),
        FerryType::Text { .. } => "longtext".into(),
        FerryType::Bytes { max_bytes: Some(n) } if *n <= 65_535 => format!("varbinary({n})"),
        FerryType::Bytes { .. } => "longblob".into(),
        FerryType::Date => "date".into(),
        FerryType::Time => "time(6)".into(),
        FerryType::Timestamp => "datetime(6)".into(),
        FerryType::TimestampTz => "datetime(6)".into(),
        FerryType::Uuid => "char(36)".into(),
        FerryType::Json => "json".into(),
        FerryType::Other(_) => "longtext".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mysql_type_names() {
        assert_eq!(
            ferry_type("int(11)"),
            FerryType::Int {
                bits: 32,
                unsigned: false
            }
        );
        assert_eq!(
            ferry_type("bigint(20) unsigned"),
            FerryType::Int {
                bits: 64,
                unsigned: true
            }
        );
        assert_eq!(ferry_type("tinyint(1)"), FerryType::Bool);
        assert_eq!(
            ferry_type("decimal(12,2)"),
            FerryType::Decimal {
                precision: Some(12),
                scale: Some(2)
            }
        );
        assert_eq!(
            ferry_type("varchar(10)"),
            FerryType::Text {
                max_chars: Some(10)
            }
        );
        assert_eq!(ferry_type("datetime(6)"), FerryType::Timestamp);
        assert_eq!(ferry_type("timestamp"), FerryType::TimestampTz);
        assert_eq!(
            ferry_type("enum('a','b')"),
            FerryType::Text { max_chars: None }
        );
        assert_eq!(ferry_type("geometry"), FerryType::Other("geometry".into()));
        assert_eq!(column_type(&ferry_type("decimal(12,2)")), "decimal(12,2)");
    }
}
