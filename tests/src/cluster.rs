//! One builder for every end-to-end test's cluster: PostgreSQL (`src` and
//! `dst`), optional etcd, N coordinators and M workers as real processes,
//! with typed handles to break them.
//!
//! ```no_run
//! # async fn f() {
//! use ferry_tests::cluster::Cluster;
//! use ferry_tests::databases::Pg;
//! let cluster = Cluster::builder()
//!     .postgres(Pg::TwoClusters)
//!     .etcd(3)
//!     .coordinators(2)
//!     .workers(3)
//!     .start()
//!     .await;
//! cluster.worker(0).kill();
//! # }
//! ```

use std::time::{Duration, Instant};

use crate::caller::Caller;
use crate::databases::{Databases, Pg};
use crate::etcd::EtcdCluster;
use crate::log_lines::{
    is_chunk_completed_line, job_lines, BECAME_LEADER, FOLLOWING_LEADER, JOB_COMPLETE,
};
use crate::net::free_ports;
use crate::node::{Node, NodeSpec, Ready};
use crate::roles::{Coordinator, Worker};
use crate::sync::blocking;

/// `ferry coordinator`'s worker lease TTL when `--lease-ttl-ms` is not given.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// How long a process may take to log a line the harness waits for at
/// start-up (leadership, registration).
pub const STARTUP_LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// Chunks a worker copies at once unless its options say otherwise.
pub const DEFAULT_CONCURRENCY: usize = 2;

/// How one worker is started: `--concurrency`, extra arguments, extra
/// environment, and whether `start()` waits for it to register.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    concurrency: usize,
    args: Vec<String>,
    env: Vec<(String, String)>,
    await_registration: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: DEFAULT_CONCURRENCY,
            args: Vec::new(),
            env: Vec::new(),
            await_registration: true,
        }
    }
}

impl WorkerOptions {
    /// Default options: concurrency 2, nothing extra.
    pub fn new() -> Self {
        Self::default()
    }

    /// `--concurrency N`.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// An extra argument after the harness's own.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// An extra environment variable (`FERRY_FAULT`, TLS files, …).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Presents `caller`'s credentials to the coordinator (`--tls-ca`,
    /// `--tls-cert`, `--tls-key`, …).
    pub fn caller(mut self, caller: &Caller) -> Self {
        self.args.extend(caller.extra_args().iter().cloned());
        self.env.extend(caller.extra_env().iter().cloned());
        self
    }

    /// `start()` does not wait for this worker to register: one the
    /// coordinator is expected to refuse (a certificate from another CA).
    pub fn unregistered(mut self) -> Self {
        self.await_registration = false;
        self
    }
}

/// Where the coordinators elect their leader.
enum EtcdChoice {
    /// Nowhere: one coordinator with an in-memory store.
    None,
    /// An etcd cluster of this many members, started by the builder.
    Members(usize),
    /// An etcd the test started itself (TLS, users), at these endpoints.
    Endpoints(String),
}

/// Extra arguments of coordinator `i` (a port of its own, a file of its own).
type PerCoordinatorArgs = Box<dyn Fn(usize) -> Vec<String>>;

/// Environment that differs per coordinator (`ClusterBuilder::coordinator_env_for`).
type PerCoordinatorEnv = Box<dyn Fn(usize) -> Vec<(String, String)>>;

/// Settings of a cluster to start; see the module docs.
pub struct ClusterBuilder {
    pg: Pg,
    databases: Option<Databases>,
    password: Option<String>,
    connection_env: Option<Vec<(String, String)>>,
    etcd: EtcdChoice,
    https: bool,
    caller: Caller,
    coordinators: usize,
    lease_ttl: Option<Duration>,
    coordinator_args: Vec<String>,
    per_coordinator_args: Option<PerCoordinatorArgs>,
    per_coordinator_env: Option<PerCoordinatorEnv>,
    coordinator_env: Vec<(String, String)>,
    env: Vec<(String, String)>,
    worker_defaults: WorkerOptions,
    workers: Vec<Option<WorkerOptions>>,
}

impl ClusterBuilder {
    fn new() -> Self {
        ClusterBuilder {
            pg: Pg::OneCluster,
            databases: None,
            password: None,
            connection_env: None,
            etcd: EtcdChoice::None,
            https: false,
            caller: Caller::new(),
            coordinators: 1,
            lease_ttl: None,
            coordinator_args: Vec::new(),
            per_coordinator_args: None,
            per_coordinator_env: None,
            coordinator_env: Vec::new(),
            env: Vec::new(),
            worker_defaults: WorkerOptions::default(),
            workers: Vec::new(),
        }
    }

    /// Where `src` and `dst` live (default: one PostgreSQL cluster).
    pub fn postgres(mut self, pg: Pg) -> Self {
        self.pg = pg;
        self
    }

    /// Uses databases the test started and filled already, instead of fresh
    /// ones (filling millions of rows before any `ferry` process runs).
    pub fn databases(mut self, dbs: Databases) -> Self {
        self.databases = Some(dbs);
        self
    }

    /// Puts `password` into the connection URLs the processes get (never
    /// checked by the test clusters): proves it is never printed.
    pub fn connection_password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// The connection environment every process and CLI call gets instead
    /// of the databases' `FERRY_CONN_SRC` and `FERRY_CONN_DST` (URLs and
    /// passwords in files, another database user).
    pub fn connection_env(mut self, env: Vec<(String, String)>) -> Self {
        self.connection_env = Some(env);
        self
    }

    /// Adds (or replaces) connection `name` for every process and CLI call:
    /// `FERRY_CONN_<NAME>=url`, on top of the databases' `src` and `dst`
    /// (`.connection("src", my.url("src"))` reads from a MariaDB instead).
    pub fn connection(self, name: &str, url: impl Into<String>) -> Self {
        let var = format!("FERRY_CONN_{}", name.to_ascii_uppercase());
        self.env(var, url)
    }

    /// Starts an etcd cluster of `members` members; the coordinators elect
    /// their leader in it (default: no etcd, one in-memory coordinator).
    pub fn etcd(mut self, members: usize) -> Self {
        self.etcd = EtcdChoice::Members(members);
        self
    }

    /// The coordinators elect their leader in an etcd the test started
    /// itself (with TLS, users): `--etcd ENDPOINTS`. Its TLS and user flags
    /// go in with `coordinator_arg`; `Cluster::etcd` has no handle on it.
    pub fn etcd_endpoints(mut self, endpoints: impl Into<String>) -> Self {
        self.etcd = EtcdChoice::Endpoints(endpoints.into());
        self
    }

    /// The coordinators serve TLS (their `--tls-cert` and `--tls-key` go in
    /// with `coordinator_arg`): workers and CLI calls get `https://` URLs.
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// Who the cluster's CLI verbs run as (`--tls-ca`, a token, a client
    /// certificate); default: `Caller::new()`, nothing presented.
    pub fn caller(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    /// Starts `n` coordinators (default 1; more than one needs `etcd`).
    pub fn coordinators(mut self, n: usize) -> Self {
        self.coordinators = n;
        self
    }

    /// The coordinators' worker lease TTL (`--lease-ttl-ms`).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// An extra argument for every coordinator.
    pub fn coordinator_arg(mut self, arg: impl Into<String>) -> Self {
        self.coordinator_args.push(arg.into());
        self
    }

    /// Extra arguments that differ per coordinator: `f(i)` for coordinator
    /// `i`, after the shared ones (e.g. a metrics port of its own).
    pub fn coordinator_args_for(mut self, f: impl Fn(usize) -> Vec<String> + 'static) -> Self {
        self.per_coordinator_args = Some(Box::new(f));
        self
    }

    /// Extra environment that differs per coordinator: `f(i)` for
    /// coordinator `i`, after the shared one (e.g. `FERRY_BIN` of another
    /// version for one of them).
    pub fn coordinator_env_for(
        mut self,
        f: impl Fn(usize) -> Vec<(String, String)> + 'static,
    ) -> Self {
        self.per_coordinator_env = Some(Box::new(f));
        self
    }

    /// An extra environment variable for every coordinator.
    pub fn coordinator_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.coordinator_env.push((key.into(), value.into()));
        self
    }

    /// An extra environment variable for every process and CLI call
    /// (`FERRY_CONN_<NAME>` of another database, a CA file, …).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds `n` workers with the default options.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers.extend(std::iter::repeat_n(None, n));
        self
    }

    /// Adds one worker with its own options.
    pub fn worker(mut self, options: WorkerOptions) -> Self {
        self.workers.push(Some(options));
        self
    }

    /// The default worker options' `--concurrency` (for `workers(n)` and `add_worker`).
    pub fn worker_concurrency(mut self, n: usize) -> Self {
        self.worker_defaults.concurrency = n;
        self
    }

    /// An extra argument for workers with the default options.
    pub fn worker_arg(mut self, arg: impl Into<String>) -> Self {
        self.worker_defaults.args.push(arg.into());
        self
    }

    /// An extra environment variable for workers with the default options.
    pub fn worker_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.worker_defaults.env.push((key.into(), value.into()));
        self
    }

    /// Workers with the default options present `caller`'s credentials.
    pub fn worker_caller(mut self, caller: &Caller) -> Self {
        self.worker_defaults = self.worker_defaults.caller(caller);
        self
    }

    /// Starts PostgreSQL (unless given), etcd, the coordinators (with etcd:
    /// `c0` until it leads, then each other one until it follows) and the
    /// workers (each until it registered). Panics with logs when anything
    /// does not come up.
    pub async fn start(self) -> Cluster {
        assert!(self.coordinators >= 1, "a cluster needs a coordinator");
        assert!(
            self.coordinators == 1 || !matches!(self.etcd, EtcdChoice::None),
            "{} coordinators need etcd to elect a leader: add .etcd(members)",
            self.coordinators
        );
        let mut dbs = match self.databases {
            Some(dbs) => dbs,
            None => Databases::start(self.pg).await,
        };
        if let Some(pw) = &self.password {
            dbs.set_password(pw);
        }
        let mut env = self.connection_env.unwrap_or_else(|| dbs.conn_env());
        env.extend(self.env.iter().cloned());
        let (etcd, etcd_endpoints) = match self.etcd {
            EtcdChoice::None => (None, None),
            EtcdChoice::Members(n) => {
                let etcd = EtcdCluster::start(n);
                let endpoints = etcd.endpoints().join(",");
                (Some(etcd), Some(endpoints))
            }
            EtcdChoice::Endpoints(endpoints) => (None, Some(endpoints)),
        };
        let elects = etcd_endpoints.is_some();
        let scheme = if self.https { "https" } else { "http" };
        let ports = free_ports(self.coordinators);
        let urls = ports
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut shared_args = Vec::new();
        if let Some(endpoints) = etcd_endpoints {
            shared_args.extend(["--etcd".to_string(), endpoints]);
        }
        if let Some(ttl) = self.lease_ttl {
            shared_args.extend(["--lease-ttl-ms".to_string(), ttl.as_millis().to_string()]);
        }
        shared_args.extend(self.coordinator_args.iter().cloned());
        let mut coordinator_env = env.clone();
        coordinator_env.extend(self.coordinator_env.iter().cloned());

        let mut coordinators = Vec::new();
        for (i, port) in ports.into_iter().enumerate() {
            let mut args = vec![
                "coordinator".to_string(),
                "--listen".to_string(),
                format!("127.0.0.1:{port}"),
            ];
            args.extend(shared_args.iter().cloned());
            if let Some(f) = &self.per_coordinator_args {
                args.extend(f(i));
            }
            let mut env = coordinator_env.clone();
            if let Some(f) = &self.per_coordinator_env {
                env.extend(f(i));
            }
            let node = Node::start(NodeSpec {
                label: format!("c{i}"),
                role: "coordinator",
                args,
                env,
                ready: Ready::Listening(port),
            });
            if elects {
                let line = if i == 0 {
                    BECAME_LEADER
                } else {
                    FOLLOWING_LEADER
                };
                node.expect_log(line, STARTUP_LINE_TIMEOUT);
            }
            coordinators.push(Coordinator::new(node, port, scheme));
        }

        let mut cluster = Cluster {
            coordinators,
            workers: Vec::new(),
            worker_defaults: self.worker_defaults,
            env,
            urls,
            caller: self.caller,
            lease_ttl: self.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL),
            elects,
            etcd,
            dbs,
        };
        let mut awaited = Vec::new();
        for options in self.workers {
            let options = options.unwrap_or_else(|| cluster.worker_defaults.clone());
            let wait = options.await_registration;
            let i = cluster.spawn_worker(options);
            if wait {
                awaited.push(i);
            }
        }
        for i in awaited {
            cluster.workers[i].wait_registered(STARTUP_LINE_TIMEOUT);
        }
        cluster
    }
}

/// A running cluster. Dropping it kills every `ferry` process, then etcd,
/// then PostgreSQL (fields drop in declaration order).
pub struct Cluster {
    coordinators: Vec<Coordinator>,
    workers: Vec<Worker>,
    worker_defaults: WorkerOptions,
    env: Vec<(String, String)>,
    urls: String,
    caller: Caller,
    lease_ttl: Duration,
    elects: bool,
    etcd: Option<EtcdCluster>,
    dbs: Databases,
}

impl Cluster {
    /// A builder with the defaults: one PostgreSQL cluster, no etcd, one
    /// coordinator, no workers.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::new()
    }

    /// The source and target databases.
    pub fn dbs(&self) -> &Databases {
        &self.dbs
    }

    /// The etcd cluster; panics when the cluster was built without one.
    pub fn etcd(&self) -> &EtcdCluster {
        self.etcd
            .as_ref()
            .expect("this cluster has no etcd: build it with .etcd(members)")
    }

    /// Every coordinator's URL, comma-separated (what workers and the CLI get).
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// The environment every process and CLI call gets (connections first).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Who the cluster's CLI verbs run as.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The coordinators' worker lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Coordinator `i` (`c{i}`).
    pub fn coordinator(&self, i: usize) -> &Coordinator {
        &self.coordinators[i]
    }

    /// Coordinator `i`, to restart it.
    pub fn coordinator_mut(&mut self, i: usize) -> &mut Coordinator {
        &mut self.coordinators[i]
    }

    /// Every coordinator.
    pub fn coordinators(&self) -> &[Coordinator] {
        &self.coordinators
    }

    /// Worker `i` (`w{i}`).
    pub fn worker(&self, i: usize) -> &Worker {
        &self.workers[i]
    }

    /// Worker `i`, to restart it.
    pub fn worker_mut(&mut self, i: usize) -> &mut Worker {
        &mut self.workers[i]
    }

    /// Every worker.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    fn spawn_worker(&mut self, options: WorkerOptions) -> usize {
        let i = self.workers.len();
        let mut args = vec![
            "worker".to_string(),
            "--coordinator".to_string(),
            self.urls.clone(),
            "--concurrency".to_string(),
            options.concurrency.to_string(),
        ];
        args.extend(options.args);
        let mut env = self.env.clone();
        env.extend(options.env);
        self.workers.push(Worker::new(Node::start(NodeSpec {
            label: format!("w{i}"),
            role: "worker",
            args,
            env,
            ready: Ready::Spawned,
        })));
        i
    }

    /// Starts one more worker with the default options mid-test (without
    /// waiting for it to register); returns its index.
    pub fn add_worker(&mut self) -> usize {
        self.spawn_worker(self.worker_defaults.clone())
    }

    /// Starts one more worker with `options`; returns its index.
    pub fn add_worker_with(&mut self, options: WorkerOptions) -> usize {
        self.spawn_worker(options)
    }

    /// The index of the coordinator leading now: running, and its last
    /// leadership line says it leads. Without etcd, the only coordinator
    /// while it runs.
    pub fn leader(&self) -> Option<usize> {
        if !self.elects {
            return self.coordinators[0].is_running().then_some(0);
        }
        self.coordinators.iter().position(Coordinator::is_leader)
    }

    /// Waits up to `timeout` for a leader; panics with every coordinator's
    /// log tail when there is none.
    pub fn wait_leader(&self, timeout: Duration) -> usize {
        blocking(|| {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(i) = self.leader() {
                    return i;
                }
                assert!(
                    Instant::now() < deadline,
                    "no leader coordinator within {timeout:?}; coordinators:\n{}",
                    self.coordinator_tails(30)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }

    /// Every line of every coordinator, every life included.
    pub fn coordinator_lines(&self) -> Vec<String> {
        self.coordinators
            .iter()
            .flat_map(|c| c.all_lines())
            .collect()
    }

    /// The coordinators' lines carrying `job=JOB`, every life included.
    pub fn job_log(&self, job: &str) -> Vec<String> {
        self.coordinators
            .iter()
            .flat_map(|c| c.logs())
            .flat_map(|log| job_lines(&log, job))
            .collect()
    }

    /// The last `n` lines of every coordinator's current life, for failure messages.
    pub fn coordinator_tails(&self, n: usize) -> String {
        self.coordinators
            .iter()
            .map(|c| format!("--- {} ---\n{}", c.process().name(), c.log_tail(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// True once any coordinator logged `Parallel processing complete`.
    pub fn job_finished(&self) -> bool {
        self.coordinator_lines()
            .iter()
            .any(|l| l.contains(JOB_COMPLETE))
    }

    /// Waits up to `timeout` for any coordinator's first `Chunk N completed`
    /// line (panics with their logs when none comes); returns true when the
    /// job had already finished by then, so a fault injected now would come
    /// too late.
    pub fn wait_first_chunk(&self, timeout: Duration) -> bool {
        blocking(|| {
            let deadline = Instant::now() + timeout;
            while !self
                .coordinator_lines()
                .iter()
                .any(|l| is_chunk_completed_line(l))
            {
                assert!(
                    Instant::now() < deadline,
                    "no `Chunk N completed` line within {timeout:?}; coordinators:\n{}",
                    self.coordinator_tails(40)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        self.job_finished()
    }
}
