//! Ferry's column types as they travel in plans (`ColumnType`), and back.

use ferry_common::proto::{ColumnType, TypeKind};

use crate::types::FerryType;

/// The plan's form of `t`.
pub fn to_proto(t: &FerryType) -> ColumnType {
    let kind = |k: TypeKind| ColumnType {
        kind: k as i32,
        ..Default::default()
    };
    match t {
        FerryType::Bool => kind(TypeKind::TypeBool),
        FerryType::Int { bits, unsigned } => ColumnType {
            bits: u32::from(*bits),
            unsigned: *unsigned,
            ..kind(TypeKind::TypeInt)
        },
        FerryType::Float { bits } => ColumnType {
            bits: u32::from(*bits),
            ..kind(TypeKind::TypeFloat)
        },
        FerryType::Decimal { precision, scale } => ColumnType {
            precision: *precision,
            scale: *scale,
            ..kind(TypeKind::TypeDecimal)
        },
        FerryType::Text { max_chars } => ColumnType {
            max_len: *max_chars,
            ..kind(TypeKind::TypeText)
        },
        FerryType::Bytes { max_bytes } => ColumnType {
            max_len: *max_bytes,
            ..kind(TypeKind::TypeBytes)
        },
        FerryType::Date => kind(TypeKind::TypeDate),
        FerryType::Time => kind(TypeKind::TypeTime),
        FerryType::Timestamp => kind(TypeKind::TypeTimestamp),
        FerryType::TimestampTz => kind(TypeKind::TypeTimestamptz),
        FerryType::Uuid => kind(TypeKind::TypeUuid),
        FerryType::Json => kind(TypeKind::TypeJson),
        FerryType::Other(name) => ColumnType {
            other: name.clone(),
            ..kind(TypeKind::TypeOther)
        },
    }
}

/// Ferry's type from the plan's form; None when unset or unknown (a plan
/// from a different version).
pub fn from_proto(t: &ColumnType) -> Option<FerryType> {
    let bits = u8::try_from(t.bits).ok();
    Some(match TypeKind::try_from(t.kind).ok()? {
        TypeKind::TypeUnspecified => return None,
        TypeKind::TypeBool => FerryType::Bool,
        TypeKind::TypeInt => FerryType::Int {
            bits: bits.filter(|b| [8, 16, 24, 32, 64].contains(b))?,
            unsigned: t.unsigned,
        },
        TypeKind::TypeFloat => FerryType::Float {
            bits: bits.filter(|b| [32, 64].contains(b))?,
        },
        TypeKind::TypeDecimal => FerryType::Decimal {
            precision: t.precision,
            scale: t.scale,
        },
        TypeKind::TypeText => FerryType::Text {
            max_chars: t.max_len,
        },
        TypeKind::TypeBytes => FerryType::Bytes {
            max_bytes: t.max_len,
        },
        TypeKind::TypeDate => FerryType::Date,
        TypeKind::TypeTime => FerryType::Time,
        TypeKind::TypeTimestamp => FerryType::Timestamp,
        TypeKind::TypeTimestamptz => FerryType::TimestampTz,
        TypeKind::TypeUuid => FerryType::Uuid,
        TypeKind::TypeJson => FerryType::Json,
        TypeKind::TypeOther => FerryType::Other(t.other.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_survives_the_plan() {
        let all = [
            FerryType::Bool,
            FerryType::Int {
                bits: 24,
                unsigned: true,
            },
            FerryType::Float { bits: 32 },
            FerryType::Decimal {
                precision: Some(12),
                scale: Some(2),
            },
            FerryType::Decimal {
                precision: None,
                scale: None,
            },
            FerryType::Text {
                max_chars: Some(16),
            },
            FerryType::Bytes { max_bytes: None },
            FerryType::Date,
            FerryType::Time,
            FerryType::Timestamp,
            FerryType::TimestampTz,
            FerryType::Uuid,
            FerryType::Json,
            FerryType::Other("inet".into()),
        ];
        for t in all {
            assert_eq!(from_proto(&to_proto(&t)), Some(t));
        }
        assert_eq!(from_proto(&ColumnType::default()), None);
    }
}
