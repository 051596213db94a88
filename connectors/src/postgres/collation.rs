//! Which order a PostgreSQL column's values sort in: its collation resolved
//! to what decides the order (code points, a libc locale, an ICU locale), so
//! `ferry verify` and `ferry repair` can tell whether the target's key ranges
//! hold the same rows as the source's chunks did.

use std::fmt;

use ferry_common::errors::DbFailure;
use serde_json::Value as Json;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::session::failed;

/// How a column's text values are ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextOrder {
    /// By code point (`C`, `POSIX`, `C.UTF-8`, the builtin provider's C locales).
    CodePoint,
    /// By a provider's locale.
    Locale {
        /// `libc`, `icu` or `builtin`.
        provider: String,
        /// The locale's name as the provider spells it.
        locale: String,
        /// False for a nondeterministic collation (equal but different strings).
        deterministic: bool,
    },
}

impl fmt::Display for TextOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextOrder::CodePoint => f.write_str("code point order (C)"),
            TextOrder::Locale {
                provider,
                locale,
                deterministic,
            } => {
                write!(f, "{provider} locale '{locale}'")?;
                if !deterministic {
                    f.write_str(", nondeterministic")?;
                }
                Ok(())
            }
        }
    }
}

/// A column's text order and the version of the library that implements it
/// on this server (`pg_collation_actual_version`): the same locale of two
/// library versions may sort some strings apart (glibc 2.28 changed most).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnCollation {
    /// How the column's values are ordered.
    pub order: TextOrder,
    /// The provider library's version for that order, when the server knows it.
    pub version: Option<String>,
}

impl ColumnCollation {
    /// Whether `target` orders values as `self` does. An unknown version
    /// (PostgreSQL 14 and older for a database's default collation) is taken
    /// to match; code point order is the same whatever the library.
    pub fn sorts_like(&self, target: &ColumnCollation) -> bool {
        if self.order != target.order {
            return false;
        }
        match (&self.order, &self.version, &target.version) {
            (TextOrder::Locale { .. }, Some(s), Some(t)) => s == t,
            _ => true,
        }
    }
}

impl fmt::Display for ColumnCollation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.order)?;
        match (&self.order, &self.version) {
            (TextOrder::Locale { .. }, Some(v)) => write!(f, " (library version {v})"),
            _ => Ok(()),
        }
    }
}

/// The order of a collation from its provider code (`pg_collation.collprovider`,
/// `pg_database.datlocprovider`), its libc `LC_COLLATE` and its ICU or
/// builtin locale.
pub fn order_of(
    provider: &str,
    collate: Option<&str>,
    locale: Option<&str>,
    deterministic: bool,
) -> TextOrder {
    let code_point = |name: &str| matches!(name, "C" | "POSIX" | "C.UTF-8" | "C.utf8");
    let (provider, name) = match provider {
        // before PostgreSQL 15 an ICU collation's locale was in collcollate
        "i" => ("icu", locale.or(collate).unwrap_or_default()),
        "b" => ("builtin", locale.unwrap_or_default()),
        _ => ("libc", collate.unwrap_or_default()),
    };
    if deterministic && provider != "icu" && code_point(name) {
        return TextOrder::CodePoint;
    }
    TextOrder::Locale {
        provider: provider.to_string(),
        locale: name.to_string(),
        deterministic,
    }
}

/// The text field `key` of a catalog row read as JSON (None when absent or NULL).
fn text<'a>(row: &'a Json, key: &str) -> Option<&'a str> {
    row.get(key).and_then(Json::as_str)
}

/// The first of `keys` the catalog row has (column names changed across
/// PostgreSQL versions: `colliculocale` became `colllocale` in 17).
fn first_text<'a>(row: &'a Json, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| text(row, k))
}

async fn catalog_row(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Json, DbFailure> {
    let row = client
        .query_one(sql, params)
        .await
        .map_err(|e| failed("cannot read the collation catalog", &e))?;
    let raw: String = row.get(0);
    serde_json::from_str(&raw)
        .map_err(|e| DbFailure::permanent(format!("the collation catalog row is not JSON: {e}")))
}

/// The collation of the one column `select` (a `SELECT` of one column,
/// without `LIMIT`) returns; None when its type has no collation (numbers,
/// times, uuids). Nothing is read: the statements only plan `select`.
pub async fn column_order(
    client: &Client,
    select: &str,
) -> Result<Option<ColumnCollation>, DbFailure> {
    let probe = format!("({select} LIMIT 0)");
    let collatable: bool = client
        .query_one(
            format!("SELECT t.typcollation <> 0 FROM pg_type t WHERE t.oid = pg_typeof({probe})")
                .as_str(),
            &[],
        )
        .await
        .map_err(|e| failed("cannot read a key column's type", &e))?
        .get(0);
    if !collatable {
        return Ok(None);
    }
    let name: Option<String> = client
        .query_one(format!("SELECT pg_collation_for({probe})").as_str(), &[])
        .await
        .map_err(|e| failed("cannot read a key column's collation", &e))?
        .get(0);
    let Some(name) = name else {
        return Ok(None);
    };
    let coll = catalog_row(
        client,
        "SELECT (to_jsonb(c) || jsonb_build_object('actual_version', pg_collation_actual_version(c.oid)))::text FROM pg_collation c WHERE c.oid = $1::text::regcollation",
        &[&name],
    )
    .await?;
    let deterministic = coll
        .get("collisdeterministic")
        .and_then(Json::as_bool)
        .unwrap_or(true);
    if text(&coll, "collprovider") != Some("d") {
        return Ok(Some(ColumnCollation {
            order: order_of(
                text(&coll, "collprovider").unwrap_or_default(),
                text(&coll, "collcollate"),
                first_text(&coll, &["colliculocale", "colllocale"]),
                deterministic,
            ),
            version: text(&coll, "actual_version").map(str::to_string),
        }));
    }
    // the database's default collation; its library version is known from
    // PostgreSQL 15 on
    let version_num: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| failed("cannot read the server's version", &e))?
        .get(0);
    let db_sql = if version_num >= 150_000 {
        "SELECT (to_jsonb(d) || jsonb_build_object('actual_version', pg_database_collation_actual_version(d.oid)))::text FROM pg_database d WHERE d.datname = current_database()"
    } else {
        "SELECT to_jsonb(d)::text FROM pg_database d WHERE d.datname = current_database()"
    };
    let db = catalog_row(client, db_sql, &[]).await?;
    Ok(Some(ColumnCollation {
        order: order_of(
            text(&db, "datlocprovider").unwrap_or("c"),
            text(&db, "datcollate"),
            first_text(&db, &["daticulocale", "datlocale"]),
            true,
        ),
        version: text(&db, "actual_version").map(str::to_string),
    }))
}

#[cfg(test)]
mod tests {
    use super::{order_of, ColumnCollation, TextOrder};

    fn libc(locale: &str, version: Option<&str>) -> ColumnCollation {
        ColumnCollation {
            order: order_of("c", Some(locale), None, true),
            version: version.map(str::to_string),
        }
    }

    #[test]
    fn one_locale_of_two_library_versions_differs() {
        let old = libc("en_US.UTF-8", Some("2.27"));
        let new = libc("en_US.UTF-8", Some("2.36"));
        assert!(!old.sorts_like(&new));
        assert_eq!(
            old.to_string(),
            "libc locale 'en_US.UTF-8' (library version 2.27)"
        );
        assert!(old.sorts_like(&old.clone()));
        // an unknown version (PostgreSQL 14's default collation) matches
        assert!(old.sorts_like(&libc("en_US.UTF-8", None)));
        // code point order is the same whatever the library
        assert!(libc("C", Some("2.27")).sorts_like(&libc("C", Some("2.36"))));
        assert_eq!(libc("C", Some("2.27")).to_string(), "code point order (C)");
        assert!(!libc("C", None).sorts_like(&libc("en_US.UTF-8", None)));
    }

    #[test]
    fn c_locales_are_code_point_order() {
        for name in ["C", "POSIX", "C.UTF-8", "C.utf8"] {
            assert_eq!(order_of("c", Some(name), None, true), TextOrder::CodePoint);
        }
        assert_eq!(
            order_of("b", None, Some("C.UTF-8"), true),
            TextOrder::CodePoint
        );
    }

    #[test]
    fn locales_differ_by_provider_and_name() {
        let libc = order_of("c", Some("en_US.UTF-8"), None, true);
        let icu = order_of("i", Some("C"), Some("en-US"), true);
        assert_ne!(libc, TextOrder::CodePoint);
        assert_ne!(libc, icu);
        assert_eq!(icu, order_of("i", Some("en_US.UTF-8"), Some("en-US"), true));
        assert_eq!(
            order_of("i", Some("de-DE"), None, true),
            order_of("i", None, Some("de-DE"), true),
            "PostgreSQL 14 and older keep an ICU locale in collcollate"
        );
        assert_ne!(
            order_of("i", Some("de-DE"), None, true),
            order_of("i", Some("sv-SE"), None, true)
        );
        assert_eq!(icu.to_string(), "icu locale 'en-US'");
        assert_ne!(
            order_of("c", Some("C"), None, false),
            TextOrder::CodePoint,
            "a nondeterministic collation is never plain code point order"
        );
    }
}
