//! How a refused row is named by its key in the rejects table: the value of a
//! one-column key, or the tuple of a composite key written as PostgreSQL
//! writes a row value (`(1,"a b")`), so it can be pasted into
//! `WHERE (k1, k2) = '(1,"a b")'` to find the source row.

use ferry_common::proto::KeyColumn;

/// Where the chunk's key columns sit in its rows (their places in the
/// query's output, in key order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFields(Vec<usize>);

impl KeyFields {
    /// The places of `key`'s columns.
    pub fn of(key: &[KeyColumn]) -> Self {
        Self(key.iter().map(|k| k.position as usize).collect())
    }

    /// Key fields at these places (tests and callers that know them).
    pub fn at(positions: &[usize]) -> Self {
        Self(positions.to_vec())
    }

    /// The key of one row as text, given each field's text (`Some(None)` for
    /// NULL, `None` for a place the row does not have). A one-column key is
    /// its value (None when NULL); a composite key is a row literal, with
    /// NULL fields left empty; None when a field is missing or the job has
    /// no key.
    pub fn text(&self, field: impl Fn(usize) -> Option<Option<String>>) -> Option<String> {
        match self.0.as_slice() {
            [] => None,
            [one] => field(*one)?,
            many => {
                let mut out = String::from("(");
                for (i, p) in many.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if let Some(v) = field(*p)? {
                        push_row_field(&mut out, &v);
                    }
                }
                out.push(')');
                Some(out)
            }
        }
    }
}

/// Appends one non-NULL field of a row literal, quoted as PostgreSQL's
/// `record_out` quotes it: when empty or holding `"`, `\`, `(`, `)`, `,` or
/// white space, with `"` and `\` doubled inside the quotes.
fn push_row_field(out: &mut String, v: &str) {
    let quote = v.is_empty()
        || v.chars()
            .any(|c| matches!(c, '"' | '\\' | '(' | ')' | ',') || c.is_whitespace());
    if !quote {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::KeyFields;

    fn fields<'a>(values: &'a [Option<&'a str>]) -> impl Fn(usize) -> Option<Option<String>> + 'a {
        move |i| values.get(i).map(|v| v.map(str::to_string))
    }

    #[test]
    fn one_column_is_its_value() {
        let row = [Some("17"), Some("x"), None];
        assert_eq!(KeyFields::at(&[0]).text(fields(&row)), Some("17".into()));
        assert_eq!(KeyFields::at(&[2]).text(fields(&row)), None);
        assert_eq!(KeyFields::at(&[5]).text(fields(&row)), None);
        assert_eq!(KeyFields::default().text(fields(&row)), None);
    }

    #[test]
    fn composite_is_a_row_literal() {
        let row = [
            Some("42"),
            Some("3"),
            Some("a b"),
            None,
            Some(""),
            Some("q\"\\,()"),
        ];
        assert_eq!(
            KeyFields::at(&[0, 1]).text(fields(&row)),
            Some("(42,3)".into())
        );
        assert_eq!(
            KeyFields::at(&[2, 3, 4]).text(fields(&row)),
            Some("(\"a b\",,\"\")".into())
        );
        assert_eq!(
            KeyFields::at(&[5, 0]).text(fields(&row)),
            Some("(\"q\"\"\\\\,()\",42)".into())
        );
        assert_eq!(KeyFields::at(&[0, 9]).text(fields(&row)), None);
    }
}
