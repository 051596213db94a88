//! Which columns a PostgreSQL job is split on: `--key a[,b…]` as typed, or
//! the primary key (one column or several) of the one table the query reads.
//! A key of several columns is compared as a row, `(a, b) >= (x, y)`, so
//! chunks cut inside a value of the first column.

use ferry_common::proto::{JobSpec, KeyColumn};
use ferry_connectors::postgres::describe::{self, QueryColumn};
use ferry_connectors::postgres::sql::show_ident;
use tokio_postgres::Client;

use super::columns::Columns;
use super::{column, PlanError};

/// The job's key columns, in key order: those `--key` names, else the source
/// table's primary key when the query returns all of its columns; empty
/// when there is neither (one chunk).
pub(super) async fn choose(
    source: &Client,
    spec: &JobSpec,
    cols: &Columns,
    query_cols: &[QueryColumn],
) -> Result<Vec<KeyColumn>, PlanError> {
    let names = if spec.key_column.trim().is_empty() {
        describe::primary_key(source, query_cols).await?
    } else {
        split_list(&spec.key_column)?
            .iter()
            .map(|part| column(part, "key column"))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut key: Vec<KeyColumn> = Vec::with_capacity(names.len());
    for name in &names {
        if key.iter().any(|k| &k.name == name) {
            return Err(PlanError::invalid(format!(
                "--key names column {} twice: list each key column once",
                show_ident(name)
            )));
        }
        key.push(cols.key(name)?);
    }
    Ok(key)
}

/// The key columns for people: `id`, or `(l_orderkey, l_linenumber)`.
pub(super) fn shown(key: &[KeyColumn]) -> String {
    match key {
        [one] => show_ident(&one.name),
        many => format!(
            "({})",
            many.iter()
                .map(|k| show_ident(&k.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Splits `a, "b,c", d` at the commas outside double quotes; each part is
/// one column name as typed.
fn split_list(input: &str) -> Result<Vec<String>, PlanError> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in input.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    parts.push(current);
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(PlanError::invalid(format!(
            "invalid key column list '{input}': name each column once, separated by commas (--key a,b)"
        )));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::split_list;

    #[test]
    fn commas_inside_quotes_stay_in_the_name() {
        assert_eq!(split_list("id").unwrap(), vec!["id"]);
        assert_eq!(
            split_list("a, \"b,c\",d").unwrap(),
            vec!["a", " \"b,c\"", "d"]
        );
        assert_eq!(
            split_list("\"say \"\"hi, there\"\"\"").unwrap(),
            vec!["\"say \"\"hi, there\"\"\""]
        );
        assert!(split_list("a,,b").is_err());
        assert!(split_list("a,").is_err());
    }
}
