//! SQLite declared column types in Ferry's terms (by SQLite's affinity rules,
//! with the usual names for dates, times and booleans), and back.

use crate::types::FerryType;

/// What a declared SQLite column type means in Ferry's terms.
pub fn ferry_type(declared: &str) -> FerryType {
    let t = declared.trim().to_ascii_uppercase();
    let args: Vec<u32> = t
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(inner, _)| {
            inner
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let base = t.split('(').next().unwrap_or_default().trim();
    match base {
        "BOOLEAN" | "BOOL" => FerryType::Bool,
        "DATE" => FerryType::Date,
        "TIME" => FerryType::Time,
        "DATETIME" | "TIMESTAMP" => FerryType::Timestamp,
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => FerryType::TimestampTz,
        "UUID" => FerryType::Uuid,
        "JSON" | "JSONB" => FerryType::Json,
        // SQLite's affinity rules, in their order
        _ if base.contains("INT") => FerryType::Int {
            bits: 64,
            unsigned: false,
        },
        _ if base.contains("CHAR") || base.contains("CLOB") || base.contains("TEXT") => {
            FerryType::Text { max_chars: None }
        }
        _ if base.contains("BLOB") || base.is_empty() => FerryType::Bytes { max_bytes: None },
        _ if base.contains("REAL") || base.contains("FLOA") || base.contains("DOUB") => {
            FerryType::Float { bits: 64 }
        }
        // NUMERIC affinity keeps 15 significant digits exactly (as INTEGER
        // or REAL); a declared precision and scale narrow that further
        _ => match args.as_slice() {
            [] => FerryType::Decimal {
                precision: Some(15),
                scale: None,
            },
            [p] => FerryType::Decimal {
                precision: Some((*p).min(15)),
                scale: Some(0),
            },
            [p, s, ..] => FerryType::Decimal {
                precision: Some((*p).min(15)),
                scale: Some(*s),
            },
        },
    }
}

/// A declared SQLite type for a Ferry type (for `--create-table`).
pub fn column_type(t: &FerryType) -> String {
    match t {
        FerryType::Bool => "BOOLEAN".into(),
        FerryType::Int { .. } => "INTEGER".into(),
        FerryType::Float { .. } => "REAL".into(),
        // text keeps every digit of a decimal
        FerryType::Decimal { .. } => "TEXT".into(),
        FerryType::Text { .. } | FerryType::Uuid | FerryType::Other(_) => "TEXT".into(),
        FerryType::Json => "JSON".into(),
        FerryType::Bytes { .. } => "BLOB".into(),
        FerryType::Date => "DATE".into(),
        FerryType::Time => "TIME".into(),
        FerryType::Timestamp => "DATETIME".into(),
        FerryType::TimestampTz => "TIMESTAMPTZ".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_sqlites_affinity_rules() {
        assert_eq!(
            ferry_type("integer"),
            FerryType::Int {
                bits: 64,
                unsigned: false
            }
        );
        assert_eq!(
            ferry_type("BIGINT"),
            FerryType::Int {
                bits: 64,
                unsigned: false
            }
        );
        assert_eq!(
            ferry_type("varchar(10)"),
            FerryType::Text { max_chars: None }
        );
        assert_eq!(ferry_type("REAL"), FerryType::Float { bits: 64 });
        assert_eq!(ferry_type(""), FerryType::Bytes { max_bytes: None });
        assert_eq!(ferry_type("datetime"), FerryType::Timestamp);
        assert_eq!(
            ferry_type("numeric"),
            FerryType::Decimal {
                precision: Some(15),
                scale: None
            }
        );
        assert_eq!(
            ferry_type("decimal(12,2)"),
            FerryType::Decimal {
                precision: Some(12),
                scale: Some(2)
            }
        );
    }
}
