//! PostgreSQL types (as `format_type` spells them) in Ferry's terms, and back.

use crate::types::FerryType;

/// What a PostgreSQL type (with modifier, `numeric(12,2)`) means in Ferry's terms.
pub fn ferry_type(full_type: &str) -> FerryType {
    let t = full_type.trim();
    let (base, args) = match t.split_once('(') {
        Some((b, rest)) => (
            b.trim(),
            rest.split(')')
                .next()
                .unwrap_or_default()
                .split(',')
                .filter_map(|p| p.trim().parse::<u32>().ok())
                .collect::<Vec<_>>(),
        ),
        None => (t, Vec::new()),
    };
    // `timestamp(3) with time zone` puts the modifier in the middle
    let base = if t.ends_with("with time zone") && base.starts_with("timestamp") {
        "timestamp with time zone"
    } else if t.ends_with("without time zone") && base.starts_with("timestamp") {
        "timestamp without time zone"
    } else if t.ends_with("without time zone") && base.starts_with("time") {
        "time without time zone"
    } else {
        base
    };
    match base {
        "boolean" => FerryType::Bool,
        "smallint" => FerryType::Int {
            bits: 16,
            unsigned: false,
        },
        "integer" => FerryType::Int {
            bits: 32,
            unsigned: false,
        },
        "bigint" => FerryType::Int {
            bits: 64,
            unsigned: false,
        },
        "real" => FerryType::Float { bits: 32 },
        "double precision" => FerryType::Float { bits: 64 },
        "numeric" => match args.as_slice() {
            [] => FerryType::Decimal {
                precision: None,
                scale: None,
            },
            [p] => FerryType::Decimal {
                precision: Some(*p),
                scale: Some(0),
            },
            [p, s, ..] => FerryType::Decimal {
                precision: Some(*p),
                scale: Some(*s),
            },
        },
        "text" => FerryType::Text { max_chars: None },
        "character varying" | "character" => FerryType::Text {
            max_chars: args.first().copied(),
        },
        "bytea" => FerryType::Bytes { max_bytes: None },
        "date" => FerryType::Date,
        "time without time zone" | "time" => FerryType::Time,
        "timestamp without time zone" | "timestamp" => FerryType::Timestamp,
        "timestamp with time zone" | "timestamptz" => FerryType::TimestampTz,
        "uuid" => FerryType::Uuid,
        "json" | "jsonb" => FerryType::Json,
        _ => FerryType::Other(t.to_string()),
    }
}

/// A PostgreSQL type that holds `t` exactly (for `--create-table`).
pub fn column_type(t: &FerryType) -> String {
    match t {
        FerryType::Bool => "boolean".into(),
        FerryType::Int {
            bits,
            unsigned: false,
        } if *bits <= 16 => "smallint".into(),
        FerryType::Int { bits, unsigned } if *bits <= 32 && !(*bits == 32 && *unsigned) => {
            "integer".into()
        }
        FerryType::Int {
            bits: 64,
            unsigned: true,
        } => "numeric(20,0)".into(),
        FerryType::Int { .. } => "bigint".into(),
        FerryType::Float { bits: 32 } => "real".into(),
        FerryType::Float { .. } => "double precision".into(),
        FerryType::Decimal {
            precision: Some(p),
            scale: Some(s),
        } => format!("numeric({p},{s})"),
        FerryType::Decimal { .. } => "numeric".into(),
        FerryType::Text { max_chars: Some(n) } => format!("character varying({n})"),
        FerryType::Text { .. } => "text".into(),
        FerryType::Bytes { .. } => "bytea".into(),
        FerryType::Date => "date".into(),
        FerryType::Time => "time without time zone".into(),
        FerryType::Timestamp => "timestamp without time zone".into(),
        FerryType::TimestampTz => "timestamp with time zone".into(),
        FerryType::Uuid => "uuid".into(),
        FerryType::Json => "jsonb".into(),
        FerryType::Other(name) => name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_format_type_output() {
        assert_eq!(
            ferry_type("numeric(12,2)"),
            FerryType::Decimal {
                precision: Some(12),
                scale: Some(2)
            }
        );
        assert_eq!(
            ferry_type("character varying(10)"),
            FerryType::Text {
                max_chars: Some(10)
            }
        );
        assert_eq!(
            ferry_type("timestamp(3) with time zone"),
            FerryType::TimestampTz
        );
        assert_eq!(
            ferry_type("timestamp without time zone"),
            FerryType::Timestamp
        );
        assert_eq!(
            ferry_type("integer"),
            FerryType::Int {
                bits: 32,
                unsigned: false
            }
        );
        assert_eq!(ferry_type("tsvector"), FerryType::Other("tsvector".into()));
        assert_eq!(column_type(&ferry_type("numeric(12,2)")), "numeric(12,2)");
    }
}
