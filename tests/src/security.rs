//! Security fixtures: certificate authorities and certificates made in the
//! test with rcgen (PEM files in a temp dir), PostgreSQL with TLS and a
//! `hostssl`-only `pg_hba.conf`, etcd serving TLS with client-certificate
//! authentication, and tokens files.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use tokio_postgres::{Client, NoTls};

use crate::etcd::etcd_bin;
use crate::net::{free_ports, port_open};
use crate::postgres::PgCluster;
use crate::sync::blocking;

/// A directory of PEM files made for one test.
pub struct Pki {
    dir: TempDir,
}

/// A certificate authority: its certificate file and what it signs with.
pub struct Ca {
    /// The CA certificate (PEM), to pass as a trust root.
    pub pem: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    /// An empty directory (readable by the `postgres` user, for server keys).
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-pki-")
            .tempdir()
            .expect("create a temp dir for certificates");
        Self { dir }
    }

    /// A path in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.path(file);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A new self-signed CA named `name` (file `<name>.pem`).
    pub fn ca(&self, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("ferry test {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let pem = self.write(&format!("{name}.pem"), &cert.pem());
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(
        &self,
        ca: &Ca,
        file: &str,
        common_name: &str,
        names: &[&str],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Issued {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = usages;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &ca.issuer).expect("sign the leaf");
        Issued {
            cert: self.write(&format!("{file}.pem"), &cert.pem()),
            key: self.write(&format!("{file}.key"), &key.serialize_pem()),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses); also
    /// good for client authentication, as etcd's gateway dials its own port
    /// with it.
    pub fn server(&self, ca: &Ca, file: &str, names: &[&str]) -> Issued {
        self.leaf(
            ca,
            file,
            names.first().copied().unwrap_or("server"),
            names,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client certificate whose common name is `cn`.
    pub fn client(&self, ca: &Ca, file: &str, cn: &str) -> Issued {
        self.leaf(
            ca,
            file,
            cn,
            &[cn],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// A file holding the PEM of several CAs (a rotation's trust bundle).
    pub fn bundle(&self, file: &str, cas: &[&Ca]) -> PathBuf {
        let text: String = cas
            .iter()
            .map(|c| std::fs::read_to_string(&c.pem).expect("read CA"))
            .collect();
        self.write(file, &text)
    }

    /// A tokens file with one line per `(token, name, role)`.
    pub fn tokens_file(&self, file: &str, entries: &[(&str, &str, &str)]) -> PathBuf {
        let text: String = entries
            .iter()
            .map(|(token, name, role)| format!("{} {name} {role}\n", sha256_hex(token)))
            .collect();
        self.write(file, &format!("# made by the test\n{text}"))
    }
}

/// Lowercase hex SHA-256 of a token, as the tokens file stores it.
pub fn sha256_hex(token: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(token.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// Copies `server` into the cluster's data directory and restarts it with
/// `ssl = on`; with `hostssl_only`, TCP connections without TLS are rejected
/// (`hostnossl … reject`). Unix-socket connections stay open (`socket_client`).
pub fn enable_pg_tls(cluster: &PgCluster, server: &Issued, hostssl_only: bool) {
    let data = cluster.data_dir();
    std::fs::copy(&server.cert, data.join("server.crt")).expect("copy server.crt");
    std::fs::copy(&server.key, data.join("server.key")).expect("copy server.key");
    let chown = |f: &str| {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(data.join(f))
            .status()
            .expect("run chown");
        assert!(status.success(), "chown {f}");
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        chown("server.crt");
        chown("server.key");
    }
    let mut perm = std::fs::metadata(data.join("server.key"))
        .expect("stat server.key")
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
    std::fs::set_permissions(data.join("server.key"), perm).expect("chmod server.key");
    let mut conf = File::options()
        .append(true)
        .open(data.join("postgresql.conf"))
        .expect("open postgresql.conf");
    writeln!(
        conf,
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
    )
    .expect("write postgresql.conf");
    let hba = if hostssl_only {
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
    } else {
        "local all all trust\nhost all all 127.0.0.1/32 trust\n"
    };
    std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    cluster.restart();
}

/// Replaces the cluster's `pg_hba.conf` with `lines` and reloads it (restart).
pub fn set_pg_hba(cluster: &PgCluster, lines: &str) {
    std::fs::write(cluster.data_dir().join("pg_hba.conf"), lines).expect("write pg_hba.conf");
    cluster.restart();
}

/// A client of database `db` over the cluster's Unix socket (open whatever
/// `pg_hba.conf` says about TCP).
pub async fn socket_client(cluster: &PgCluster, db: &str) -> Client {
    let socket_dir = cluster
        .data_dir()
        .parent()
        .expect("data dir has a parent")
        .to_path_buf();
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(&socket_dir)
        .port(cluster.port())
        .user("postgres")
        .dbname(db);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {db} over {}: {e}", socket_dir.display()));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A one-member etcd serving TLS on its client port and requiring client
/// certificates from `ca` (`--client-cert-auth --trusted-ca-file`).
pub struct TlsEtcd {
    dir: TempDir,
    port: u16,
    child: Mutex<Option<Child>>,
}

impl TlsEtcd {
    /// Starts it with `server` as its certificate; panics with its log when it
    /// does not listen within 30 s.
    pub fn start(ca: &Ca, server: &Issued) -> Self {
        blocking(|| {
            let dir = tempfile::Builder::new()
                .prefix("ferry-etcd-tls-")
                .tempdir()
                .expect("temp dir for etcd");
            let ports = free_ports(2);
            let client_url = format!("https://127.0.0.1:{}", ports[0]);
            let peer_url = format!("http://127.0.0.1:{}", ports[1]);
            let log = File::create(dir.path().join("etcd.log")).expect("etcd log");
            let child = Command::new(etcd_bin())
                .args(["--name", "tls0", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("tls0={peer_url}")])
                .arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&ca.pem)
                .arg("--cert-file")
                .arg(&server.cert)
                .arg("--key-file")
                .arg(&server.key)
                .args([
                    "--logger",
                    "zap",
                    "--log-outputs",
                    "stderr",
                    "--log-level",
                    "warn",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", etcd_bin().display()));
            let etcd = TlsEtcd {
                dir,
                port: ports[0],
                child: Mutex::new(Some(child)),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while !port_open(etcd.port) {
                assert!(
                    Instant::now() < deadline,
                    "TLS etcd did not listen on {client_url}; log:\n{}",
                    etcd.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            etcd
        })
    }

    /// The client endpoint (`https://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The server log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Where its data lives (for a raw search of what it stored).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- TLS etcd log ---\n{}",
                crate::text::tail(&self.log(), 30)
            );
        }
    }
}

/// A client of a TLS etcd presenting `client`'s certificate (with etcd's
/// auth on, the certificate's common name is the user).
pub async fn etcd_tls_client(endpoint: &str, ca: &Ca, client: &Issued) -> etcd_client::Client {
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    let tls = etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(&ca.pem)))
        .identity(etcd_client::Identity::from_pem(
            read(&client.cert),
            read(&client.key),
        ));
    etcd_client::Client::connect(
        [endpoint],
        Some(etcd_client::ConnectOptions::new().with_tls(tls)),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to etcd at {endpoint}: {e}"))
}

/// Turns etcd's authentication on with users `root` (its own password) and
/// `user`/`password` (granted the root role), as `etcdctl user add` and
/// `etcdctl auth enable` would.
pub async fn enable_etcd_auth(client: &mut etcd_client::Client, user: &str, password: &str) {
    client
        .user_add("root", "root-password-of-the-test", None)
        .await
        .expect("etcd user add root");
    client
        .user_grant_role("root", "root")
        .await
        .expect("grant root");
    client
        .user_add(user, password, None)
        .await
        .expect("etcd user add");
    client
        .user_grant_role(user, "root")
        .await
        .expect("grant role");
    client.auth_enable().await.expect("etcd auth enable");
}

/// Every key and value under `prefix` of a TLS etcd (what `etcdctl get
/// --prefix` prints), read with `client`'s certificate.
pub async fn etcd_dump(
    endpoint: &str,
    ca: &Ca,
    client: &Issued,
    prefix: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut c = etcd_tls_client(endpoint, ca, client).await;
    let resp = c
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap_or_else(|e| panic!("etcd get --prefix {prefix}: {e}"));
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().to_vec(),
            )
        })
        .collect()
}
