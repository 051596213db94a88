//! Column types in Ferry's own terms, what each database's type names mean in
//! them, and which source type may land in which target type. A pair that
//! cannot map at all is refused at planning, naming the column and both
//! types; a pair that maps but can lose a value (narrower integer, shorter
//! text, fewer decimal digits, text that must parse) is checked value by
//! value, and a value that would not land exactly is a rejected row.

/// What a column holds, whatever the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FerryType {
    /// `boolean`, MySQL `BOOL` (`TINYINT(1)`).
    Bool,
    /// A signed or unsigned integer of `bits` bits.
    Int {
        /// 8, 16, 24, 32 or 64.
        bits: u8,
        /// Unsigned (MySQL).
        unsigned: bool,
    },
    /// A binary float of 32 or 64 bits.
    Float {
        /// 32 or 64.
        bits: u8,
    },
    /// An exact decimal; unset precision means unbounded.
    Decimal {
        /// Total digits.
        precision: Option<u32>,
        /// Digits after the point.
        scale: Option<u32>,
    },
    /// Text, at most `max_chars` characters when set.
    Text {
        /// Length limit in characters.
        max_chars: Option<u32>,
    },
    /// Bytes, at most `max_bytes` when set.
    Bytes {
        /// Length limit in bytes.
        max_bytes: Option<u32>,
    },
    /// A calendar date.
    Date,
    /// A time of day.
    Time,
    /// A timestamp without zone.
    Timestamp,
    /// An instant (timestamp with zone).
    TimestampTz,
    /// A UUID.
    Uuid,
    /// A JSON document.
    Json,
    /// A type Ferry cannot carry between databases of different kinds
    /// (its name as the database spells it).
    Other(String),
}

impl FerryType {
    /// The range of an integer type, as (min, max) in i128.
    pub fn int_range(&self) -> Option<(i128, i128)> {
        match *self {
            FerryType::Int { bits, unsigned } => {
                let bits = u32::from(bits);
                Some(if unsigned {
                    (0, (1i128 << bits) - 1)
                } else {
                    (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
                })
            }
            _ => None,
        }
    }

    /// A short name for messages.
    pub fn describe(&self) -> String {
        match self {
            FerryType::Bool => "boolean".into(),
            FerryType::Int { bits, unsigned } => {
                format!(
                    "{}integer ({bits} bits)",
                    if *unsigned { "unsigned " } else { "" }
                )
            }
            FerryType::Float { bits } => format!("float ({bits} bits)"),
            FerryType::Decimal { precision, scale } => match (precision, scale) {
                (Some(p), Some(s)) => format!("decimal({p},{s})"),
                (Some(p), None) => format!("decimal({p})"),
                _ => "decimal".into(),
            },
            FerryType::Text { max_chars: Some(n) } => format!("text of at most {n} characters"),
            FerryType::Text { max_chars: None } => "text".into(),
            FerryType::Bytes { .. } => "bytes".into(),
            FerryType::Date => "date".into(),
            FerryType::Time => "time".into(),
            FerryType::Timestamp => "timestamp".into(),
            FerryType::TimestampTz => "timestamp with time zone".into(),
            FerryType::Uuid => "uuid".into(),
            FerryType::Json => "json".into(),
            FerryType::Other(n) => n.clone(),
        }
    }
}

/// How values of a source column become values of a target column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Every value lands as it is.
    Exact,
    /// Each value is checked (range, length, digits, parse) and refused as
    /// a rejected row when it would not land exactly.
    Checked,
}

/// Whether a `from` column can land in a `to` column, and how; None when the
/// pair cannot map at all (a planning error).
pub fn mapping(from: &FerryType, to: &FerryType) -> Option<Mapping> {
    use FerryType as T;
    use Mapping::{Checked, Exact};
    Some(match (from, to) {
        (T::Other(a), T::Other(b)) if a == b => Exact,
        (T::Other(_), _) | (_, T::Other(_)) => return None,
        (a, b) if a == b => Exact,
        // anything has a text form; text parses into anything
        (_, T::Text { max_chars: None }) => Exact,
        (_, T::Text { .. }) => Checked,
        (T::Text { .. }, _) => Checked,
        (T::Json, T::Json) | (T::Uuid, T::Uuid) => Exact,
        (T::Bool, T::Bool) => Exact,
        (T::Bool, T::Int { .. }) => Exact,
        (T::Int { .. }, T::Bool) => Checked,
        (T::Int { .. }, T::Int { .. }) => {
            let (a, b) = (from.int_range()?, to.int_range()?);
            if b.0 <= a.0 && a.1 <= b.1 {
                Exact
            } else {
                Checked
            }
        }
        (T::Int { .. }, T::Decimal { .. }) => Checked,
        (T::Decimal { .. }, T::Int { .. }) => Checked,
        // a whole float in range lands; 1.5 or 1e300 is a rejected row
        (T::Float { .. }, T::Int { .. }) => Checked,
        (T::Decimal { .. }, T::Decimal { .. }) => Checked,
        (T::Int { bits, .. }, T::Float { bits: fb }) => {
            // a float holds integers exactly up to its mantissa
            if (*fb == 64 && *bits <= 32) || (*fb == 32 && *bits <= 16) {
                Exact
            } else {
                Checked
            }
        }
        (T::Float { bits: a }, T::Float { bits: b }) => {
            if a <= b {
                Exact
            } else {
                Checked
            }
        }
        (T::Decimal { .. }, T::Float { .. }) => Checked,
        (T::Float { .. }, T::Decimal { .. }) => Checked,
        (T::Bytes { .. }, T::Bytes { max_bytes: None }) => Exact,
        (T::Bytes { .. }, T::Bytes { .. }) => Checked,
        (T::Uuid, T::Bytes { .. }) => Checked,
        (T::Date, T::Timestamp) | (T::Date, T::TimestampTz) => Exact,
        (T::Timestamp, T::TimestampTz) | (T::TimestampTz, T::Timestamp) => Exact,
        (T::Timestamp, T::Date) | (T::TimestampTz, T::Date) => Checked,
        (T::Json, T::Bytes { .. }) => Checked,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const I32: FerryType = FerryType::Int {
        bits: 32,
        unsigned: false,
    };
    const I64: FerryType = FerryType::Int {
        bits: 64,
        unsigned: false,
    };

    #[test]
    fn widening_is_exact_and_narrowing_is_checked() {
        assert_eq!(mapping(&I32, &I64), Some(Mapping::Exact));
        assert_eq!(mapping(&I64, &I32), Some(Mapping::Checked));
        let u64 = FerryType::Int {
            bits: 64,
            unsigned: true,
        };
        assert_eq!(mapping(&u64, &I64), Some(Mapping::Checked));
        assert_eq!(
            mapping(&I64, &FerryType::Text { max_chars: None }),
            Some(Mapping::Exact)
        );
        assert_eq!(
            mapping(&FerryType::Text { max_chars: None }, &I64),
            Some(Mapping::Checked)
        );
        let dec = FerryType::Decimal {
            precision: Some(12),
            scale: Some(2),
        };
        assert_eq!(mapping(&dec, &dec), Some(Mapping::Exact));
        assert_eq!(
            mapping(&FerryType::Float { bits: 64 }, &I32),
            Some(Mapping::Checked)
        );
        assert_eq!(I32.int_range(), Some((-(1 << 31), (1 << 31) - 1)));
    }

    #[test]
    fn impossible_pairs_are_refused() {
        assert_eq!(mapping(&FerryType::Bytes { max_bytes: None }, &I64), None);
        assert_eq!(mapping(&FerryType::Date, &FerryType::Bool), None);
        assert_eq!(mapping(&FerryType::Uuid, &I64), None);
        assert_eq!(
            mapping(&FerryType::Other("tsvector".into()), &FerryType::Json),
            None
        );
    }
}
