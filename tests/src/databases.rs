//! The databases of one end-to-end test: `src` and `dst`, in one cluster or two.

use tokio_postgres::Client;

use crate::cli::{run_cli, CliOutput, Submit, LONG_CLI_TIMEOUT};

use crate::data::{
    create_items_table, create_items_table_without_key, fill_items, fill_skewed, table_checksum,
};
use crate::postgres::PgCluster;

/// Name of the source database and of its connection (`FERRY_CONN_SRC`).
pub const SRC_DB: &str = "src";
/// Name of the target database and of its connection (`FERRY_CONN_DST`).
pub const DST_DB: &str = "dst";

/// The test table, in both databases.
pub const ITEMS_TABLE: &str = "public.items";
/// The job query over the source's test table.
pub const ITEMS_QUERY: &str = "SELECT * FROM items";

/// Where the source and target databases live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pg {
    /// `src` and `dst` in one PostgreSQL cluster.
    #[default]
    OneCluster,
    /// `src` and `dst` each in a cluster of its own, so the target can be
    /// stopped or restarted alone.
    TwoClusters,
}

/// Source database `src` and target database `dst`, either in one cluster or
/// each in its own (for tests that restart the target alone).
pub struct Databases {
    source: PgCluster,
    target: Option<PgCluster>,
    password: Option<String>,
}

impl Databases {
    /// Starts the cluster(s) `pg` asks for and creates `src` and `dst`.
    pub async fn start(pg: Pg) -> Self {
        match pg {
            Pg::OneCluster => Self::one_cluster().await,
            Pg::TwoClusters => Self::two_clusters().await,
        }
    }

    /// One cluster holding both `src` and `dst`.
    pub async fn one_cluster() -> Self {
        let source = PgCluster::start();
        source.create_db(SRC_DB).await;
        source.create_db(DST_DB).await;
        Databases {
            source,
            target: None,
            password: None,
        }
    }

    /// `src` and `dst` in two separate clusters.
    pub async fn two_clusters() -> Self {
        let source = PgCluster::start();
        let target = PgCluster::start();
        source.create_db(SRC_DB).await;
        target.create_db(DST_DB).await;
        Databases {
            source,
            target: Some(target),
            password: None,
        }
    }

    /// The cluster holding `src`.
    pub fn source_cluster(&self) -> &PgCluster {
        &self.source
    }

    /// The cluster holding `dst` (the source's when there is only one).
    pub fn target_cluster(&self) -> &PgCluster {
        self.target.as_ref().unwrap_or(&self.source)
    }

    /// Puts `password` into every connection URL handed out from now on.
    /// The test clusters trust local connections, so it is never checked:
    /// tests use it to prove a password is never printed.
    pub fn set_password(&mut self, password: &str) {
        self.password = Some(password.to_string());
    }

    fn with_password(&self, url: String) -> String {
        match &self.password {
            Some(pw) => url.replacen("postgres@", &format!("postgres:{pw}@"), 1),
            None => url,
        }
    }

    /// URL of `src`.
    pub fn source_url(&self) -> String {
        self.with_password(self.source.url(SRC_DB))
    }

    /// URL of `dst`.
    pub fn target_url(&self) -> String {
        self.with_password(self.target_cluster().url(DST_DB))
    }

    /// A client of `src`.
    pub async fn source(&self) -> Client {
        self.source.client(SRC_DB).await
    }

    /// A client of `dst`.
    pub async fn target(&self) -> Client {
        self.target_cluster().client(DST_DB).await
    }

    /// The named-connection environment for coordinator and workers:
    /// `FERRY_CONN_SRC` and `FERRY_CONN_DST`.
    pub fn conn_env(&self) -> Vec<(String, String)> {
        vec![
            ("FERRY_CONN_SRC".to_string(), self.source_url()),
            ("FERRY_CONN_DST".to_string(), self.target_url()),
        ]
    }

    /// Creates `public.items` in both databases and fills the source's with
    /// `rows` sequential-key rows; the target's stays empty.
    pub async fn prepare_items(&self, rows: u64) {
        let source = self.source().await;
        create_items_table(&source, "public.items").await;
        create_items_table(&self.target().await, "public.items").await;
        fill_items(&source, "public.items", rows).await;
    }

    /// Like `prepare_items`, but the target's table has no primary key, so a
    /// chunk that lands twice leaves duplicate rows to count (with a key, the
    /// second copy would fail on the key instead).
    pub async fn prepare_items_keyless_target(&self, rows: u64) {
        let source = self.source().await;
        create_items_table(&source, "public.items").await;
        create_items_table_without_key(&self.target().await, "public.items").await;
        fill_items(&source, "public.items", rows).await;
    }

    /// Like `prepare_items`, with the skewed keys of `data::fill_skewed`.
    pub async fn prepare_skewed_items(&self, rows: u64) {
        let source = self.source().await;
        create_items_table(&source, "public.items").await;
        create_items_table(&self.target().await, "public.items").await;
        fill_skewed(&source, "public.items", rows).await;
    }

    /// Runs `ferry local` (coordinator and `workers` workers in one process)
    /// copying `job` from `src` to `dst` by URL; the caller checks how it exited.
    pub fn local(&self, job: &Submit, workers: usize) -> CliOutput {
        let args = job.local_args(&self.source_url(), &self.target_url(), workers);
        run_cli::<_, &str, &str>(&args, &[], LONG_CLI_TIMEOUT)
    }

    /// Panics unless `table` has the same row count and checksum in `dst` as
    /// in `src`: every source row landed exactly once, unchanged.
    pub async fn assert_copied_exactly(&self, table: &str) {
        let source = table_checksum(&self.source().await, table).await;
        let target = table_checksum(&self.target().await, table).await;
        assert_eq!(
            target, source,
            "target (count, checksum) differs from the source's for {table}"
        );
    }
}
