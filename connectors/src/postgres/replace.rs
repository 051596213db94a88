//! Mode replace: rows load into a new table without indexes; at the end the
//! target's indexes and key constraints are built once on it and it is swapped
//! in, in one transaction, so readers see the old table until the swap.

use std::time::Instant;

use ferry_common::errors::DbFailure;
use ferry_common::proto::TableRef;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient};

use super::session::failed;
use super::sql::{quote_ident, quote_table, truncate_bytes, MAX_IDENT_BYTES};

/// Least `maintenance_work_mem` the index builds of the swap run with (a
/// larger server setting stands): a B-tree over a few million rows then
/// sorts in memory instead of spilling to temporary files. Held only for
/// the swap's transaction, once per job.
const INDEX_BUILD_MEMORY: i64 = 256 * 1024 * 1024;

/// `<table prefix><suffix>`, cut so the whole fits PostgreSQL's 63 bytes;
/// the suffix carries the job id, so two jobs never share the name.
fn job_name(table: &str, suffix: &str) -> String {
    let room = MAX_IDENT_BYTES.saturating_sub(suffix.len());
    format!("{}{suffix}", truncate_bytes(table, room))
}

/// The table a replace job loads into: `<target>__ferry_<job>`, at most 63
/// bytes, unique per job even when target names share a long prefix.
pub fn load_table(table: &TableRef, job_id: &str) -> TableRef {
    TableRef::new(
        table.schema.clone(),
        job_name(&table.name, &format!("__ferry_{job_id}")),
    )
}

/// The name the old table takes for the moment of the swap.
fn old_table(table: &TableRef, job_id: &str) -> TableRef {
    TableRef::new(
        table.schema.clone(),
        job_name(&table.name, &format!("__ferry_old_{job_id}")),
    )
}

/// Storage options of the target (`fillfactor=70`, `toast.…`), carried over to
/// the load table, without the autovacuum switch the load overrides.
async fn storage_options(target: &Client, table: &TableRef) -> Result<Vec<String>, DbFailure> {
    let row = target
        .query_one(
            "SELECT coalesce(c.reloptions, '{}'), coalesce(t.reloptions, '{}')
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| failed("cannot read the target's storage options", &e))?;
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
    table: &TableRef,
    load: &TableRef,
) -> Result<(), DbFailure> {
    let mut options = storage_options(target, table).await?;
    options.push("autovacuum_enabled = false".into());
    options.push("toast.autovacuum_enabled = false".into());
    let sql = format!(
        "DROP TABLE IF EXISTS {load};
         CREATE TABLE {load} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE) WITH ({options})",
        load = quote_table(load),
        table = quote_table(table),
        options = options.join(", ")
    );
    target
        .batch_execute(&sql)
        .await
        .map_err(|e| failed("cannot create the table to load for mode replace", &e))
}

/// Gives the loaded table the target's autovacuum setting back and collects
/// its statistics, so queries after the swap are planned on real numbers.
async fn settle(
    target: &impl GenericClient,
    table: &TableRef,
    load: &TableRef,
) -> Result<(), DbFailure> {
    let row = target
        .query_one(
            "SELECT (SELECT o FROM unnest(c.reloptions) o WHERE o LIKE 'autovacuum_enabled=%'),
                    (SELECT 'toast.' || o FROM unnest(t.reloptions) o WHERE o LIKE 'autovacuum_enabled=%')
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_class t ON t.oid = c.reltoastrelid
              WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| failed("cannot read the target's autovacuum setting", &e))?;
    let kept: Vec<String> = [row.get::<_, Option<String>>(0), row.get(1)]
        .into_iter()
        .flatten()
        .collect();
    let mut sql = format!(
        "ALTER TABLE {} RESET (autovacuum_enabled, toast.autovacuum_enabled);",
        quote_table(load)
    );
    if !kept.is_empty() {
        sql += &format!(
            "ALTER TABLE {} SET ({});",
            quote_table(load),
            kept.join(", ")
        );
    }
    sql += &format!("ANALYZE {};", quote_table(load));
    target
        .batch_execute(&sql)
        .await
        .map_err(|e| failed("cannot analyze the loaded table", &e))
}

/// Whether the load table still exists (false once swapped in).
pub async fn load_table_exists(target: &Client, load: &TableRef) -> Result<bool, DbFailure> {
    let row = target
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                             WHERE n.nspname = $1 AND c.relname = $2)",
            &[&load.schema, &load.name],
        )
        .await
        .map_err(|e| failed("cannot look up the load table", &e))?;
    Ok(row.get(0))
}

/// One index of the target, as the server describes it.
struct IndexDef {
    name: String,
    def: String,
    quoted_name: String,
    constraint: Option<String>,
    primary: bool,
}

/// The index definition `def` (from `pg_get_indexdef`) rebuilt as an index
/// named `temp` on `load`: the server's own prefix (`CREATE [UNIQUE] INDEX
/// <name> ON [ONLY] <schema>.<table> USING`) is matched exactly, so nothing
/// inside the definition is ever touched.
fn rebuild(
    def: &str,
    quoted_name: &str,
    quoted_table: &str,
    temp: &str,
    load: &TableRef,
) -> Option<String> {
    let (unique, rest) = match def.strip_prefix("CREATE UNIQUE INDEX ") {
        Some(r) => ("UNIQUE ", r),
        None => ("", def.strip_prefix("CREATE INDEX ")?),
    };
    let rest = rest.strip_prefix(quoted_name)?.strip_prefix(" ON ")?;
    let rest = rest.strip_prefix("ONLY ").unwrap_or(rest);
    let rest = rest.strip_prefix(quoted_table)?;
    rest.starts_with(" USING ").then(|| {
        format!(
            "CREATE {unique}INDEX {} ON {}{rest}",
            quote_ident(temp),
            quote_table(load)
        )
    })
}

/// Builds the target's indexes and key constraints on the load table and swaps
/// it in, in one transaction; the old table is dropped. `job_id` names the
/// temporary index and table names uniquely.
pub async fn finalize(
    target: &mut Client,
    table: &TableRef,
    load: &TableRef,
    job_id: &str,
) -> Result<(), DbFailure> {
    if !load_table_exists(target, load).await? {
        return Ok(()); // swapped in by an earlier attempt
    }
    let tx = target
        .transaction()
        .await
        .map_err(|e| failed("cannot start the swap", &e))?;
    // the builds sort in memory where the server's setting is smaller
    tx.query_typed(
        "SELECT set_config('maintenance_work_mem',
                (greatest(pg_size_bytes(current_setting('maintenance_work_mem')), $1) / 1024)::text || 'kB', true)",
        &[(&INDEX_BUILD_MEMORY, Type::INT8)],
    )
    .await
    .map_err(|e| failed("cannot set maintenance_work_mem for the index builds", &e))?;
    let started = Instant::now();
    let rows = tx
        .query(
            "SELECT i.relname::text, pg_get_indexdef(x.indexrelid), quote_ident(i.relname),
                    quote_ident(n.nspname) || '.' || quote_ident(t.relname),
                    c.conname::text, c.contype = 'p'
               FROM pg_index x
               JOIN pg_class i ON i.oid = x.indexrelid
               JOIN pg_class t ON t.oid = x.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
               LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid AND c.contype IN ('p', 'u')
              WHERE n.nspname = $1 AND t.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| failed("cannot read the target's indexes", &e))?;
    let mut quoted_table = String::new();
    let indexes: Vec<IndexDef> = rows
        .iter()
        .map(|r| {
            quoted_table = r.get(3);
            IndexDef {
                name: r.get(0),
                def: r.get(1),
                quoted_name: r.get(2),
                constraint: r.get(4),
                primary: r.get::<_, Option<bool>>(5).unwrap_or(false),
            }
        })
        .collect();
    let mut renames = Vec::new();
    let schema = quote_ident(&table.schema);
    for (n, ix) in indexes.iter().enumerate() {
        let temp = format!("ferry_{job_id}_i{n}");
        let Some(sql) = rebuild(&ix.def, &ix.quoted_name, &quoted_table, &temp, load) else {
            return Err(DbFailure::permanent(format!(
                "cannot rebuild index {} for mode replace: its definition has an unexpected form ({})",
                ix.name, ix.def
            )));
        };
        tx.batch_execute(&sql).await.map_err(|e| {
            failed(
                &format!("cannot build index {} on the new table", ix.name),
                &e,
            )
        })?;
        if let Some(con) = &ix.constraint {
            let temp_con = format!("ferry_{job_id}_c{n}");
            let what = if ix.primary { "PRIMARY KEY" } else { "UNIQUE" };
            tx.batch_execute(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {what} USING INDEX {}",
                quote_table(load),
                quote_ident(&temp_con),
                quote_ident(&temp)
            ))
            .await
            .map_err(|e| failed(&format!("cannot add constraint {con} to the new table"), &e))?;
            // the constraint's index takes the constraint's name; give both theirs back
            renames.push(format!(
                "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
                quote_table(table),
                quote_ident(&temp_con),
                quote_ident(con)
            ));
            if con != &ix.name {
                renames.push(format!(
                    "ALTER INDEX {schema}.{} RENAME TO {}",
                    quote_ident(con),
                    quote_ident(&ix.name)
                ));
            }
        } else {
            renames.push(format!(
                "ALTER INDEX {schema}.{} RENAME TO {}",
                quote_ident(&temp),
                quote_ident(&ix.name)
            ));
        }
    }
    let built = Instant::now();
    settle(&tx, table, load).await?;
    let analyzed = Instant::now();
    let old = old_table(table, job_id);
    let swap = format!(
        "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE;
         ALTER TABLE {t} RENAME TO {old_name};
         ALTER TABLE {load} RENAME TO {name};
         DROP TABLE {old};",
        t = quote_table(table),
        old_name = quote_ident(&old.name),
        load = quote_table(load),
        name = quote_ident(&table.name),
        old = quote_table(&old)
    );
    tx.batch_execute(&swap).await.map_err(|e| {
        failed(
            "cannot swap the new table in (do views or foreign keys depend on the target?)",
            &e,
        )
    })?;
    for r in renames {
        tx.batch_execute(&r)
            .await
            .map_err(|e| failed("cannot rename an index after the swap", &e))?;
    }
    tx.commit()
        .await
        .map_err(|e| failed("cannot commit the swap", &e))?;
    tracing::info!(
        job = %job_id,
        indexes = indexes.len(),
        index_build_s = (built - started).as_secs_f64(),
        analyze_s = (analyzed - built).as_secs_f64(),
        swap_s = analyzed.elapsed().as_secs_f64(),
        "replace: indexes built, table analyzed and swapped in"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_table_names_fit_and_stay_unique() {
        let long = "x".repeat(63);
        let a = load_table(&TableRef::new("public", long.as_str()), "j0123456789a");
        let b = load_table(&TableRef::new("public", long.as_str()), "j0123456789b");
        assert!(a.name.len() <= 63 && b.name.len() <= 63, "{a:?}");
        assert_ne!(a.name, b.name);
        assert!(a.name.ends_with("__ferry_j0123456789a"));
        let short = load_table(&TableRef::new("s", "items"), "j1");
        assert_eq!(short.name, "items__ferry_j1");
        let umlaut = load_table(&TableRef::new("s", "ö".repeat(40)), "j0123456789a");
        assert!(umlaut.name.len() <= 63);
        assert!(
            old_table(&TableRef::new("s", long.as_str()), "j0123456789a")
                .name
                .len()
                <= 63
        );
    }

    #[test]
    fn rebuilds_only_the_servers_prefix() {
        let load = TableRef::new("s", "t__ferry_j1");
        let def = "CREATE UNIQUE INDEX \"T ON x\" ON s.\"T\" USING btree (id) WHERE (note <> ' ON s.\"T\" ')";
        let sql = rebuild(def, "\"T ON x\"", "s.\"T\"", "ferry_j1_i0", &load).unwrap();
        assert_eq!(
            sql,
            "CREATE UNIQUE INDEX \"ferry_j1_i0\" ON \"s\".\"t__ferry_j1\" USING btree (id) WHERE (note <> ' ON s.\"T\" ')"
        );
        assert!(rebuild(
            "CREATE INDEX a ON b.c USING btree (x)",
            "z",
            "b.c",
            "t",
            &load
        )
        .is_none());
    }
}
