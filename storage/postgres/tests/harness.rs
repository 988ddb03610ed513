//! The test harness' fallback: a throwaway PostgreSQL cluster when no server runs.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use tidings::{AppId, Store, UserId};
use tidings_postgres::{PgStore, PgStoreConfig};

#[tokio::test]
async fn throwaway_cluster_serves_a_migrated_store() {
    if common::find_bin("initdb").is_none() {
        // Without PostgreSQL's server binaries there is nothing to start; the other tests then
        // fail with a message saying what to install.
        eprintln!("skipped: PostgreSQL's server binaries (initdb, pg_ctl) are not installed");
        return;
    }
    let url = common::throwaway_cluster().expect("start a throwaway cluster");
    let store = PgStore::connect(PgStoreConfig::new(url).schema("tidings"))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let n = store
        .current_sequence(&AppId::from("app"), &UserId::from("alice"))
        .await
        .expect("query the throwaway cluster");
    assert_eq!(n, 0);
}
