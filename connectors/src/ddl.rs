//! The statement `--create-table` runs, spelled for any database by its
//! identifier quoting.

/// `CREATE TABLE IF NOT EXISTS table (col type, …, PRIMARY KEY (…))` with
/// `table` already quoted and each column name quoted by `quote`.
pub fn create_table_sql(
    table: &str,
    columns: &[(String, String)],
    primary_key: &[String],
    quote: fn(&str) -> String,
) -> String {
    let mut defs: Vec<String> = columns
        .iter()
        .map(|(n, t)| format!("{} {t}", quote(n)))
        .collect();
    if !primary_key.is_empty() {
        let keys: Vec<String> = primary_key.iter().map(|k| quote(k)).collect();
        defs.push(format!("PRIMARY KEY ({})", keys.join(", ")));
    }
    format!("CREATE TABLE IF NOT EXISTS {table} ({})", defs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_key_are_quoted() {
        let q = |s: &str| format!("\"{s}\"");
        let sql = create_table_sql(
            "\"t\"",
            &[
                ("id".into(), "bigint".into()),
                ("a b".into(), "text".into()),
            ],
            &["id".into()],
            q,
        );
        assert_eq!(
            sql,
            "CREATE TABLE IF NOT EXISTS \"t\" (\"id\" bigint, \"a b\" text, PRIMARY KEY (\"id\"))"
        );
    }
}
