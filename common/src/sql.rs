//! SQL quoting and table-name parsing shared by planner and workers.

/// Quotes an identifier for PostgreSQL (`"a""b"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for PostgreSQL (`'it''s'`).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A schema-qualified table name, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
}

impl TableName {
    /// The quoted `"schema"."table"` form.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.table))
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// Parses `schema.table`, `table` (schema `public`) or quoted parts; unquoted
/// parts fold to lower case as PostgreSQL folds them.
pub fn parse_table_name(input: &str) -> Result<TableName, String> {
    let parts = split_ident_path(input.trim())?;
    match parts.as_slice() {
        [table] => Ok(TableName {
            schema: "public".into(),
            table: table.clone(),
        }),
        [schema, table] => Ok(TableName {
            schema: schema.clone(),
            table: table.clone(),
        }),
        _ => Err(format!("table name '{input}' must be schema.table")),
    }
}

/// Parses one identifier (quoted or folded to lower case).
pub fn parse_ident(input: &str) -> Result<String, String> {
    let parts = split_ident_path(input.trim())?;
    match parts.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("'{input}' is not a single column name")),
    }
}

fn split_ident_path(input: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(format!("unterminated quote in '{input}'")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(format!("empty name in '{input}'"));
        }
        parts.push(part);
        match chars.next() {
            Some('.') => continue,
            None => return Ok(parts),
            Some(c) => return Err(format!("unexpected '{c}' in '{input}'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!(
            parse_table_name("Items").unwrap().to_string(),
            "public.items"
        );
        assert_eq!(
            parse_table_name("s.\"Big Table\"").unwrap().table,
            "Big Table"
        );
        assert!(parse_table_name("a.b.c").is_err());
        assert!(parse_table_name("").is_err());
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
