//! Names as users type them (`Sales`, `"Ops Data"."Sales"`): parsed once into
//! parts that remember whether they were quoted. Each database's connector
//! resolves them to exact spellings by its own folding rule (PostgreSQL folds
//! unquoted names to lower case); from then on names travel as exact
//! spellings (`TableRef`, column names), never re-parsed.

use std::fmt;

/// One part of a name as typed: its text (quotes removed, `""` unescaped)
/// and whether it was quoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamePart {
    /// The text between the quotes, or the bare word.
    pub text: String,
    /// Whether the part was written in double quotes (exact spelling).
    pub quoted: bool,
}

impl NamePart {
    /// The part as PostgreSQL resolves it: quoted parts keep their spelling,
    /// unquoted ones fold ASCII letters to lower case.
    pub fn folded_lower(&self) -> String {
        if self.quoted {
            self.text.clone()
        } else {
            self.text.to_ascii_lowercase()
        }
    }
}

/// A name of one or more dot-separated parts, as typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QualifiedName {
    /// The parts, outermost first (`schema`, `table`).
    pub parts: Vec<NamePart>,
}

/// A name that cannot be parsed; says where and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing was given.
    #[error("the name is empty")]
    Empty,
    /// A part between dots is empty (`a..b`, `.a`).
    #[error("'{input}' has an empty part: write schema.table")]
    EmptyPart {
        /// The input.
        input: String,
    },
    /// A double quote is never closed.
    #[error("'{input}' has an unterminated double quote: close it, and write a quote inside a quoted name as \"\"")]
    Unterminated {
        /// The input.
        input: String,
    },
    /// A character follows a quoted part where a dot or the end was expected.
    #[error("unexpected '{found}' in '{input}' after a quoted name: parts are separated by dots")]
    Unexpected {
        /// The input.
        input: String,
        /// The character found.
        found: char,
    },
    /// More parts than the kind of name allows.
    #[error("'{input}' has {got} parts; {expected}")]
    TooManyParts {
        /// The input.
        input: String,
        /// Parts found.
        got: usize,
        /// What is accepted.
        expected: &'static str,
    },
}

impl QualifiedName {
    /// Parses `a`, `a.b`, `"A b"."c.d"`: unquoted parts end at a dot;
    /// quoted parts may hold dots, spaces and `""` for a quote. Surrounding
    /// whitespace is ignored; unquoted parts keep their case here (folding is
    /// the database's rule, applied by its connector).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        let mut parts = Vec::new();
        let mut chars = trimmed.chars().peekable();
        loop {
            let mut text = String::new();
            let quoted = chars.peek() == Some(&'"');
            if quoted {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            text.push('"');
                        }
                        Some('"') => break,
                        Some(c) => text.push(c),
                        None => {
                            return Err(NameError::Unterminated {
                                input: input.to_string(),
                            })
                        }
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    text.push(c);
                    chars.next();
                }
                text = text.trim().to_string();
            }
            if text.is_empty() {
                return Err(NameError::EmptyPart {
                    input: input.to_string(),
                });
            }
            parts.push(NamePart { text, quoted });
            match chars.next() {
                Some('.') => continue,
                None => return Ok(Self { parts }),
                Some(c) => {
                    return Err(NameError::Unexpected {
                        input: input.to_string(),
                        found: c,
                    })
                }
            }
        }
    }

    /// Parses a name of at most `max` parts (`expected` says what is
    /// accepted, for the error).
    pub fn parse_at_most(
        input: &str,
        max: usize,
        expected: &'static str,
    ) -> Result<Self, NameError> {
        let name = Self::parse(input)?;
        if name.parts.len() > max {
            return Err(NameError::TooManyParts {
                input: input.to_string(),
                got: name.parts.len(),
                expected,
            });
        }
        Ok(name)
    }

    /// The last part (the table or column itself).
    pub fn last(&self) -> &NamePart {
        // parse never returns an empty list
        &self.parts[self.parts.len() - 1]
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            if p.quoted {
                write!(f, "\"{}\"", p.text.replace('"', "\"\""))?;
            } else {
                f.write_str(&p.text)?;
            }
        }
        Ok(())
    }
}

/// Parses a table name (`table` or `schema.table`).
pub fn parse_table(input: &str) -> Result<QualifiedName, NameError> {
    QualifiedName::parse_at_most(input, 2, "expected table or schema.table")
}

/// Parses a column name (one part).
pub fn parse_column(input: &str) -> Result<NamePart, NameError> {
    let name = QualifiedName::parse_at_most(input, 1, "expected a single column name")?;
    Ok(name.last().clone())
}

/// Parses a comma-separated list of column names (`a, "b,c"`): commas
/// inside double quotes belong to the name; each item is one column.
pub fn parse_column_list(input: &str) -> Result<Vec<NamePart>, NameError> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in input.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items.iter().map(|i| parse_column(i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(text: &str, quoted: bool) -> NamePart {
        NamePart {
            text: text.into(),
            quoted,
        }
    }

    #[test]
    fn parses_quoted_and_bare_parts() {
        let n = QualifiedName::parse("\"Ops Data\".\"Sales\"").unwrap();
        assert_eq!(n.parts, vec![part("Ops Data", true), part("Sales", true)]);
        let n = QualifiedName::parse(" Sales ").unwrap();
        assert_eq!(n.parts, vec![part("Sales", false)]);
        assert_eq!(n.last().folded_lower(), "sales");
        let n = QualifiedName::parse("s.\"a.b\"\"c\"").unwrap();
        assert_eq!(n.parts, vec![part("s", false), part("a.b\"c", true)]);
        assert_eq!(n.to_string(), "s.\"a.b\"\"c\"");
        let n = QualifiedName::parse("\"größe\"").unwrap();
        assert_eq!(n.last().text, "größe");
        // PostgreSQL folds only ASCII letters
        assert_eq!(part("Größe", false).folded_lower(), "größe");
    }

    #[test]
    fn refuses_malformed_names() {
        assert_eq!(QualifiedName::parse("  "), Err(NameError::Empty));
        assert!(matches!(
            QualifiedName::parse("a..b"),
            Err(NameError::EmptyPart { .. })
        ));
        assert!(matches!(
            QualifiedName::parse("\"abc"),
            Err(NameError::Unterminated { .. })
        ));
        assert!(matches!(
            QualifiedName::parse("\"a\"b"),
            Err(NameError::Unexpected { found: 'b', .. })
        ));
        assert!(matches!(
            parse_table("a.b.c"),
            Err(NameError::TooManyParts { got: 3, .. })
        ));
        assert!(parse_column("a.b").is_err());
        assert_eq!(parse_column("\"select\"").unwrap(), part("select", true));
    }

    #[test]
    fn column_lists_split_outside_quotes() {
        assert_eq!(parse_column_list("id").unwrap(), vec![part("id", false)]);
        assert_eq!(
            parse_column_list("a, \"b,c\" ,D").unwrap(),
            vec![part("a", false), part("b,c", true), part("D", false)]
        );
        assert_eq!(
            parse_column_list("\"say \"\"hi, there\"\"\"").unwrap(),
            vec![part("say \"hi, there\"", true)]
        );
        assert_eq!(parse_column_list("a,,b"), Err(NameError::Empty));
        assert_eq!(parse_column_list("a,"), Err(NameError::Empty));
        assert!(parse_column_list("a.b, c").is_err());
    }
}
