//! Mode replace: rows load into a new table without indexes; at the end the
//! target's indexes and key constraints are built once on it and it is swapped
//! in, in one transaction, so readers see the old table until the swap.

use ferry_common::sql::{quote_ident, TableName};
use tokio_postgres::{Client, GenericClient};

use super::PlanError;
use ferry_common::errors::classify_pg;

/// The name of the table a replace job loads into.
pub fn load_table(table: &TableName, job_id: &str) -> TableName {
    TableName {
        schema: table.schema.clone(),
        table: format!("{}__ferry_{job_id}", table.table),
    }
}

fn err(context: &str, e: &tokio_postgres::Error) -> PlanError {
    let f = classify_pg(e);
    PlanError {
        class: f.class,
        message: format!("{context}: {}", f.message),
    }
}

/// Storage options of the target (`fillfactor=70`, `toast.…`), carried over to
/// the load table, without the autovacuum switch the load overrides.
async fn storage_options(target: &Client, table: &TableName) -> Result<Vec<String>, PlanError> {
    let row = target
        .query_one(
            "SELECT coalesce(c.reloptions, '{}'), coalesce(t.reloptions, '{}')
               FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
              WHERE c.oid = $1::text::regclass",
            &[&table.quoted()],
        )
        .await
        .map_err(|e| err("cannot read the target's storage options", &e))?;
    let own: Vec<String> = row.get(0);
    let toast: Vec<String> = row.get(1);
    Ok(own
        .into_iter()
        .chain(toast.into_iter().map(|o| format!("toast.{o}")))
        .filter(|o| {
            !o.starts_with("autovacuum_enabled=") && !o.starts_with("toast.autovacuum_enabled=")
        })
        .collect())
}

/// Creates the (empty, index-free) load table shaped like the target, with the
/// target's storage options and autovacuum off while it loads: a vacuum or
/// analyze of a half-loaded table is work thrown away (the swap re-enables it).
pub async fn create_load_table(
    target: &Client,
    table: &TableName,
    load: &TableName,
) -> Result<(), PlanError> {
    let mut options = storage_options(target, table).await?;
    options.push("autovacuum_enabled = false".into());
    options.push("toast.autovacuum_enabled = false".into());
    let sql = format!(
        "DROP TABLE IF EXISTS {load};
         CREATE TABLE {load} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE) WITH ({options})",
        load = load.quoted(),
        table = table.quoted(),
        options = options.join(", ")
    );
    target
        .batch_execute(&sql)
        .await
        .map_err(|e| err("cannot create the table to load for mode replace", &e))
}

/// Gives the loaded table the target's autovacuum setting back and collects
/// its statistics, so queries after the swap are planned on real numbers.
async fn settle(
    target: &impl GenericClient,
    table: &TableName,
    load: &TableName,
) -> Result<(), PlanError> {
    let row = target
        .query_one(
            "SELECT (SELECT o FROM unnest(c.reloptions) o WHERE o LIKE 'autovacuum_enabled=%'),
                    (SELECT 'toast.' || o FROM unnest(t.reloptions) o WHERE o LIKE 'autovacuum_enabled=%')
               FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
              WHERE c.oid = $1::text::regclass",
            &[&table.quoted()],
        )
        .await
        .map_err(|e| err("cannot read the target's autovacuum setting", &e))?;
    let kept: Vec<String> = [row.get::<_, Option<String>>(0), row.get(1)]
        .into_iter()
        .flatten()
        .collect();
    let mut sql = format!(
        "ALTER TABLE {} RESET (autovacuum_enabled, toast.autovacuum_enabled);",
        load.quoted()
    );
    if !kept.is_empty() {
        sql += &format!("ALTER TABLE {} SET ({});", load.quoted(), kept.join(", "));
    }
    sql += &format!("ANALYZE {};", load.quoted());
    target
        .batch_execute(&sql)
        .await
        .map_err(|e| err("cannot analyze the loaded table", &e))
}

/// Whether the load table still exists (false once swapped in).
pub async fn load_table_exists(target: &Client, load: &TableName) -> Result<bool, PlanError> {
    let row = target
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&load.quoted()])
        .await
        .map_err(|e| err("cannot look up the load table", &e))?;
    Ok(row.get(0))
}

/// Builds the target's indexes and key constraints on the load table and swaps
/// it in, in one transaction; the old table is dropped.
pub async fn finalize(
    target: &mut Client,
    table: &TableName,
    load: &TableName,
) -> Result<(), PlanError> {
    if !load_table_exists(target, load).await? {
        return Ok(()); // swapped in by an earlier attempt
    }
    let tx = target
        .transaction()
        .await
        .map_err(|e| err("cannot start the swap", &e))?;
    let indexes = tx
        .query(
            "SELECT i.relname::text, pg_get_indexdef(x.indexrelid), c.conname::text, c.contype::text
               FROM pg_index x
               JOIN pg_class i ON i.oid = x.indexrelid
               LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid AND c.contype IN ('p', 'u')
              WHERE x.indrelid = $1::text::regclass",
            &[&table.quoted()],
        )
        .await
        .map_err(|e| err("cannot read the target's indexes", &e))?;
    let qualified = format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.table)
    );
    let plain = format!("{}.{}", table.schema, table.table);
    let mut renames = Vec::new();
    for row in &indexes {
        let name: String = row.get(0);
        let def: String = row.get(1);
        let constraint: Option<String> = row.get(2);
        let kind: Option<String> = row.get(3);
        let temp = format!("{name}__ferry");
        let on_new = format!(" ON {} ", load.quoted());
        let def = def
            .replacen(&format!(" ON {qualified} "), &on_new, 1)
            .replacen(&format!(" ON {plain} "), &on_new, 1)
            .replacen(
                &format!("INDEX {} ON", quote_ident(&name)),
                &format!("INDEX {} ON", quote_ident(&temp)),
                1,
            )
            .replacen(
                &format!("INDEX {name} ON"),
                &format!("INDEX {} ON", quote_ident(&temp)),
                1,
            );
        tx.batch_execute(&def)
            .await
            .map_err(|e| err(&format!("cannot build index {name} on the new table"), &e))?;
        if let (Some(con), Some(kind)) = (constraint, kind) {
            let what = if kind == "p" { "PRIMARY KEY" } else { "UNIQUE" };
            tx.batch_execute(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {what} USING INDEX {}",
                load.quoted(),
                quote_ident(&format!("{con}__ferry")),
                quote_ident(&temp)
            ))
            .await
            .map_err(|e| err(&format!("cannot add constraint {con} to the new table"), &e))?;
            renames.push(format!(
                "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                table.quoted(),
                quote_ident(&format!("{con}__ferry")),
                quote_ident(&con)
            ));
            if con != name {
                renames.push(format!(
                    "ALTER INDEX {}.{} RENAME TO {}",
                    quote_ident(&table.schema),
                    quote_ident(&con),
                    quote_ident(&name)
                ));
            }
        } else {
            renames.push(format!(
                "ALTER INDEX {}.{} RENAME TO {}",
                quote_ident(&table.schema),
                quote_ident(&temp),
                quote_ident(&name)
            ));
        }
    }
    settle(&tx, table, load).await?;
    let old = TableName {
        schema: table.schema.clone(),
        table: format!("{}__ferry_old", table.table),
    };
    let swap = format!(
        "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE;
         ALTER TABLE {t} RENAME TO {old_name};
         ALTER TABLE {load} RENAME TO {name};
         DROP TABLE {old};",
        t = table.quoted(),
        old_name = quote_ident(&old.table),
        load = load.quoted(),
        name = quote_ident(&table.table),
        old = old.quoted()
    );
    tx.batch_execute(&swap).await.map_err(|e| {
        err(
            "cannot swap the new table in (do views or foreign keys depend on the target?)",
            &e,
        )
    })?;
    for r in renames {
        tx.batch_execute(&r)
            .await
            .map_err(|e| err("cannot rename an index after the swap", &e))?;
    }
    tx.commit()
        .await
        .map_err(|e| err("cannot commit the swap", &e))
}
