//! How the tests find PostgreSQL, and a store in a schema of its own.
//!
//! 1. `DATABASE_URL`, when set.
//! 2. Else the local server: `postgres://postgres@127.0.0.1:5432/test` (or `/postgres`).
//! 3. Else, when PostgreSQL's server binaries are installed (`initdb`, `pg_ctl` on `PATH` or
//!    under `/usr/lib/postgresql/*/bin`), a throwaway cluster in a temporary directory, stopped
//!    and removed by a watchdog process when the test process exits.
//! 4. Else the tests fail, saying what to install.
//!
//! Every store lives in its own schema `tidings_test_<unix time>_<random>`, dropped when the
//! store is dropped, so tests run in parallel without seeing each other's rows. Schemas left by
//! a killed run are dropped by the next run once they are an hour old.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tidings::{
    AppId, ChangePage, ChangesQuery, DeliveryOutcome, Endpoint, EndpointId, HistoryPage,
    HistoryQuery, Inserted, LeaseRequest, LeasedDelivery, Notification, NotificationId,
    OutcomeReport, PurgeReport, StateUpdate, Store, StoreError, Timestamp, UserId,
};
use tidings_postgres::{PgStore, PgStoreConfig};
use tokio::sync::OnceCell;

const LOCAL: [&str; 2] = [
    "postgres://postgres@127.0.0.1:5432/test",
    "postgres://postgres@127.0.0.1:5432/postgres",
];

static URL: OnceCell<String> = OnceCell::const_new();

/// The database URL the tests use (found once per process).
pub async fn database_url() -> String {
    URL.get_or_init(find_database).await.clone()
}

async fn find_database() -> String {
    let url = if let Ok(url) = std::env::var("DATABASE_URL") {
        if let Err(e) = probe(&url).await {
            panic!("DATABASE_URL is set but PostgreSQL is not reachable there: {e}");
        }
        url
    } else {
        let mut found = None;
        for url in LOCAL {
            if probe(url).await.is_ok() {
                found = Some(url.to_owned());
                break;
            }
        }
        match found {
            Some(url) => url,
            None => match throwaway_cluster() {
                Ok(url) => url,
                Err(why) => panic!(
                    "no PostgreSQL for the tests: DATABASE_URL is not set, nothing answers on \
                     127.0.0.1:5432, and a throwaway cluster could not be started ({why}). \
                     Set DATABASE_URL, start PostgreSQL locally (user postgres, trust auth), or \
                     install PostgreSQL's server binaries (Debian/Ubuntu: `apt-get install \
                     postgresql`; macOS: `brew install postgresql`) so the tests can start one."
                ),
            },
        }
    };
    sweep_stale_schemas(&url).await;
    url
}

async fn probe(url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let result = client.simple_query("SELECT 1").await.map(drop);
    drop(client);
    let _ = task.await;
    result
}

pub async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

async fn sweep_stale_schemas(url: &str) {
    let client = admin(url).await;
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tidings\\_test\\_%'",
            &[],
        )
        .await
        .expect("list test schemas");
    let now = unix_now();
    for row in rows {
        let name: String = row.get(0);
        let created = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(created) > 3600 {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh schema name.
pub fn schema_name() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("tidings_test_{}_{}", unix_now(), &random[..8])
}

/// A migrated store in a schema of its own, dropped with the store.
pub async fn fresh_store() -> TestStore {
    fresh_store_with(|config| config).await
}

/// Like [`fresh_store`], with the configuration adjusted by `adjust`.
pub async fn fresh_store_with(adjust: impl FnOnce(PgStoreConfig) -> PgStoreConfig) -> TestStore {
    let url = database_url().await;
    let schema = schema_name();
    let store = PgStore::connect(adjust(
        PgStoreConfig::new(url.clone())
            .schema(schema.clone())
            .pool_size(8),
    ))
    .await
    .expect("connect");
    store.migrate().await.expect("migrate");
    TestStore {
        store,
        guard: Arc::new(SchemaGuard { url, schema }),
    }
}

/// Another store on the same schema as `other` (a second "instance"), with its own pool.
pub async fn another_instance(other: &TestStore) -> TestStore {
    let store = PgStore::connect(
        PgStoreConfig::new(other.guard.url.clone())
            .schema(other.guard.schema.clone())
            .pool_size(8),
    )
    .await
    .expect("connect");
    TestStore {
        store,
        guard: Arc::clone(&other.guard),
    }
}

/// Drops its schema when the last store using it is dropped.
#[derive(Debug)]
pub struct SchemaGuard {
    pub url: String,
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // Drop runs inside a test's runtime: do the async work on a thread of our own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A [`PgStore`] whose schema is dropped when it goes away.
#[derive(Debug, Clone)]
pub struct TestStore {
    pub store: PgStore,
    pub guard: Arc<SchemaGuard>,
}

impl Deref for TestStore {
    type Target = PgStore;
    fn deref(&self) -> &PgStore {
        &self.store
    }
}

impl TestStore {
    /// A plain admin connection to the test database, with `search_path` on the test schema.
    pub async fn admin(&self) -> tokio_postgres::Client {
        let client = admin(&self.guard.url).await;
        client
            .batch_execute(&format!("SET search_path TO \"{}\"", self.guard.schema))
            .await
            .expect("set search_path");
        client
    }
}

#[async_trait]
impl Store for TestStore {
    async fn upsert_endpoint(&self, endpoint: Endpoint) -> Result<Endpoint, StoreError> {
        self.store.upsert_endpoint(endpoint).await
    }
    async fn endpoints(&self, app: &AppId, user: &UserId) -> Result<Vec<Endpoint>, StoreError> {
        self.store.endpoints(app, user).await
    }
    async fn delete_endpoint(
        &self,
        app: &AppId,
        user: &UserId,
        id: EndpointId,
    ) -> Result<(), StoreError> {
        self.store.delete_endpoint(app, user, id).await
    }
    async fn insert_notification(&self, n: Notification) -> Result<Inserted, StoreError> {
        self.store.insert_notification(n).await
    }
    async fn notification(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Notification, StoreError> {
        self.store.notification(app, user, id, now).await
    }
    async fn record_fetch(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        endpoint: EndpointId,
        at: Timestamp,
    ) -> Result<Notification, StoreError> {
        self.store.record_fetch(app, user, id, endpoint, at).await
    }
    async fn update_state(&self, update: StateUpdate) -> Result<Notification, StoreError> {
        self.store.update_state(update).await
    }
    async fn update_states(
        &self,
        update: tidings::BulkStateUpdate,
    ) -> Result<Vec<Option<Notification>>, StoreError> {
        self.store.update_states(update).await
    }
    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        self.store.history(query).await
    }
    async fn changes(&self, query: &ChangesQuery) -> Result<ChangePage, StoreError> {
        self.store.changes(query).await
    }
    async fn current_sequence(&self, app: &AppId, user: &UserId) -> Result<u64, StoreError> {
        self.store.current_sequence(app, user).await
    }
    async fn lease_due(&self, request: LeaseRequest) -> Result<Vec<LeasedDelivery>, StoreError> {
        self.store.lease_due(request).await
    }
    async fn record_outcomes(
        &self,
        outcomes: Vec<DeliveryOutcome>,
    ) -> Result<OutcomeReport, StoreError> {
        self.store.record_outcomes(outcomes).await
    }
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<PurgeReport, StoreError> {
        self.store.purge_expired(now, limit).await
    }
    async fn deactivate_stale_endpoints(
        &self,
        seen_before: Timestamp,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        self.store
            .deactivate_stale_endpoints(seen_before, now)
            .await
    }
    async fn delete_user(&self, user: &UserId) -> Result<(), StoreError> {
        self.store.delete_user(user).await
    }
    async fn wait_for_work(&self, timeout: Duration) {
        self.store.wait_for_work(timeout).await
    }
}

// ---------------------------------------------------------------------------------------------
// The throwaway cluster.

pub fn find_bin(name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root (initdb refuses to run as root).
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Starts a throwaway cluster in a temporary directory and returns its URL. A watchdog process
/// stops it and removes the directory when this process exits.
pub fn throwaway_cluster() -> Result<String, String> {
    let initdb = find_bin("initdb").ok_or("initdb not found")?;
    let pg_ctl = find_bin("pg_ctl").ok_or("pg_ctl not found")?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("tidings-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    if root {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err("chown of the cluster directory to postgres failed".into());
        }
    }
    let data = dir.join("data");
    let out = as_server_user(&initdb, root)
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("find a free port: {e}"))?
        .port();
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
        dir.display()
    );
    let out = as_server_user(&pg_ctl, root)
        .args(["-w", "-t", "60", "-D"])
        .arg(&data)
        .args(["-l"])
        .arg(dir.join("log"))
        .args(["-o", &options, "start"])
        .output()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runas}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        runas = if root { "runuser -u postgres -- " } else { "" },
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &stop])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("start the watchdog: {e}"))?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}
