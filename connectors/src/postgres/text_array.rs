//! A one-dimensional `text[]` read in place from PostgreSQL's binary form:
//! the planner's key sample arrives as one such array, and borrowing its
//! elements (instead of a `String` each) keeps the planner's memory to the
//! keys it keeps.

use std::error::Error;

use tokio_postgres::types::{FromSql, Type};

/// The binary form of a `text[]` value, borrowed from the row.
#[derive(Debug, Clone, Copy)]
pub struct TextArray<'a>(&'a [u8]);

impl<'a> FromSql<'a> for TextArray<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(TextArray(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT_ARRAY
    }
}

/// Why the array could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextArrayError {
    /// The bytes end before the array does.
    #[error("the array ends early")]
    Truncated,
    /// More than one dimension.
    #[error("the array has {0} dimensions, not one")]
    Dimensions(i32),
    /// An element is NULL.
    #[error("the array holds a NULL")]
    Null,
    /// An element is not UTF-8.
    #[error("an element is not UTF-8")]
    NotUtf8,
}

impl<'a> TextArray<'a> {
    /// The elements in order; an empty array (no dimensions) has none.
    pub fn elements(self) -> Result<Elements<'a>, TextArrayError> {
        let mut buf = self.0;
        let ndim = take_i32(&mut buf)?;
        let _has_nulls = take_i32(&mut buf)?;
        let _element_type = take_i32(&mut buf)?;
        let left = match ndim {
            0 => 0,
            1 => {
                let len = take_i32(&mut buf)?;
                let _lower_bound = take_i32(&mut buf)?;
                len.max(0) as usize
            }
            n => return Err(TextArrayError::Dimensions(n)),
        };
        Ok(Elements { buf, left })
    }
}

/// The elements of a [`TextArray`], each borrowed.
#[derive(Debug)]
pub struct Elements<'a> {
    buf: &'a [u8],
    left: usize,
}

impl Elements<'_> {
    /// How many elements remain.
    pub fn remaining(&self) -> usize {
        self.left
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<&'a str, TextArrayError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.element())
    }
}

impl<'a> Elements<'a> {
    fn element(&mut self) -> Result<&'a str, TextArrayError> {
        let len = take_i32(&mut self.buf)?;
        if len < 0 {
            return Err(TextArrayError::Null);
        }
        let len = len as usize;
        if self.buf.len() < len {
            return Err(TextArrayError::Truncated);
        }
        let (bytes, rest) = self.buf.split_at(len);
        self.buf = rest;
        std::str::from_utf8(bytes).map_err(|_| TextArrayError::NotUtf8)
    }
}

fn take_i32(buf: &mut &[u8]) -> Result<i32, TextArrayError> {
    let Some((head, rest)) = buf.split_first_chunk::<4>() else {
        return Err(TextArrayError::Truncated);
    };
    *buf = rest;
    Ok(i32::from_be_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(items: &[Option<&str>]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [1i32, 0, 25, items.len() as i32, 1] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for it in items {
            match it {
                Some(s) => {
                    b.extend_from_slice(&(s.len() as i32).to_be_bytes());
                    b.extend_from_slice(s.as_bytes());
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        b
    }

    #[test]
    fn reads_each_element_in_order() {
        let raw = encode(&[Some("1"), Some(""), Some("héllo")]);
        let got: Result<Vec<&str>, _> = TextArray(&raw).elements().unwrap().collect();
        assert_eq!(got, Ok(vec!["1", "", "héllo"]));
    }

    #[test]
    fn an_empty_array_has_no_elements() {
        let raw = [0u8; 12];
        assert_eq!(TextArray(&raw).elements().unwrap().count(), 0);
    }

    #[test]
    fn nulls_and_short_input_are_errors() {
        let raw = encode(&[Some("a"), None]);
        let got: Vec<_> = TextArray(&raw).elements().unwrap().collect();
        assert_eq!(got[1], Err(TextArrayError::Null));
        let raw = encode(&[Some("abc")]);
        let cut = &raw[..raw.len() - 1];
        let got: Vec<_> = TextArray(cut).elements().unwrap().collect();
        assert_eq!(got, vec![Err(TextArrayError::Truncated)]);
    }
}
