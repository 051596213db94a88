//! MySQL spelling of names: backtick quoting for SQL text, and how names read
//! in messages.

use ferry_common::proto::TableRef;

/// Quotes an identifier for MySQL (`` `a``b` ``), whatever its spelling.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `` `database`.`table` `` for SQL text.
pub fn quote_table(t: &TableRef) -> String {
    format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name))
}

/// A table as people read it in messages (`dst.items`).
pub fn show_table(t: &TableRef) -> String {
    let plain = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let part = |s: &str| {
        if plain(s) {
            s.to_string()
        } else {
            quote_ident(s)
        }
    };
    format!("{}.{}", part(&t.schema), part(&t.name))
}

/// A comma-separated list of quoted identifiers.
pub fn quote_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_with_backticks() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_table(&TableRef::new("dst", "Sales")), "`dst`.`Sales`");
        assert_eq!(
            show_table(&TableRef::new("dst", "my table")),
            "dst.`my table`"
        );
    }
}
