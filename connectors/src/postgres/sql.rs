//! PostgreSQL spelling of names: quoting for SQL text, and the form people
//! see in messages (quoted only where PostgreSQL would quote it, as
//! `quote_ident` and `regclass` output do).

use ferry_common::proto::TableRef;

/// Keywords PostgreSQL 15 requires quoted as identifiers (reserved,
/// type/function-name and column-name keywords).
const KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes); longer ones
/// are truncated by the server.
pub const MAX_IDENT_BYTES: usize = 63;

/// Quotes an identifier for SQL text (`"a""b"`), whatever its spelling.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"` for SQL text.
pub fn quote_table(t: &TableRef) -> String {
    format!("{}.{}", quote_ident(&t.schema), quote_ident(&t.name))
}

/// An identifier as PostgreSQL shows it: bare when it is a lower-case word
/// that is no keyword, quoted otherwise (`sales`, `"Sales"`, `"select"`).
pub fn show_ident(name: &str) -> String {
    let bare = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !KEYWORDS.contains(&name);
    if bare {
        name.to_string()
    } else {
        quote_ident(name)
    }
}

/// A table as PostgreSQL shows it (`public.sales`, `"Ops Data"."Sales"`).
pub fn show_table(t: &TableRef) -> String {
    format!("{}.{}", show_ident(&t.schema), show_ident(&t.name))
}

/// A comma-separated list of quoted identifiers.
pub fn quote_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The longest prefix of `name` that fits in `max` bytes without splitting a
/// character.
pub fn truncate_bytes(name: &str, max: usize) -> &str {
    if name.len() <= max {
        return name;
    }
    let mut end = max;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_names_as_postgres_does() {
        assert_eq!(show_ident("sales"), "sales");
        assert_eq!(show_ident("Sales"), "\"Sales\"");
        assert_eq!(show_ident("select"), "\"select\"");
        assert_eq!(show_ident("größe"), "\"größe\"");
        assert_eq!(show_ident("a b"), "\"a b\"");
        assert_eq!(show_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(show_ident("_x1$"), "_x1$");
        assert_eq!(show_ident("1x"), "\"1x\"");
        let t = TableRef::new("Ops Data", "Sales");
        assert_eq!(show_table(&t), "\"Ops Data\".\"Sales\"");
        assert_eq!(
            quote_table(&TableRef::new("public", "a.b")),
            "\"public\".\"a.b\""
        );
    }

    #[test]
    fn truncates_on_character_boundaries() {
        assert_eq!(truncate_bytes("abc", 5), "abc");
        assert_eq!(truncate_bytes("größe", 3), "gr");
        assert_eq!(truncate_bytes("größe", 4), "grö");
    }
}
