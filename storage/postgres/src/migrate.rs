//! Embedded diesel migrations, applied under an advisory lock.

use diesel::migration::{MigrationSource, MigrationVersion};
use diesel::pg::Pg;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tidings::{StoreError, StoreErrorKind};

use crate::error;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// What [`PgStore::migrate`](crate::PgStore::migrate) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call (empty when the schema was up to date).
    pub applied: Vec<String>,
    /// The newest version this code knows, which the schema is now at.
    pub current: String,
}

/// The versions this code knows, oldest first.
pub(crate) fn known_versions() -> Result<Vec<String>, StoreError> {
    let migrations = MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("embedded migrations: {e}")))?;
    let mut versions: Vec<String> = migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    versions.sort();
    Ok(versions)
}

/// Brings `schema` up to date. Two instances migrating at once are serialised by a session
/// advisory lock keyed by the schema; the second finds nothing left to do.
pub(crate) async fn run(url: &str, schema: &str) -> Result<MigrationReport, StoreError> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(error::connection)?;
    let lock = format!(
        "SELECT pg_advisory_lock(hashtext('tidings.migrate'), hashtext('{schema}'));
         CREATE SCHEMA IF NOT EXISTS \"{schema}\";
         SET search_path TO \"{schema}\";"
    );
    conn.batch_execute(&lock).await.map_err(error::query)?;
    let known = known_versions()?;
    let schema_owned = schema.to_owned();
    let result = tokio::task::spawn_blocking(move || {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
        let result = apply(&mut wrapper, &known, &schema_owned);
        // Ending the session releases the advisory lock.
        drop(wrapper);
        result
    })
    .await
    .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("migration task failed: {e}")))?;
    result
}

fn apply(
    conn: &mut AsyncConnectionWrapper<AsyncPgConnection>,
    known: &[String],
    schema: &str,
) -> Result<MigrationReport, StoreError> {
    let failed = |e: Box<dyn std::error::Error + Send + Sync>| {
        StoreError::new(StoreErrorKind::Other, format!("migration failed: {e}"))
    };
    let applied: Vec<String> = conn
        .applied_migrations()
        .map_err(failed)?
        .iter()
        .map(MigrationVersion::to_string)
        .collect();
    let newest_known = known.last().cloned().unwrap_or_default();
    if let Some(unknown) = applied.iter().filter(|v| !known.contains(v)).max() {
        return Err(StoreError::new(
            StoreErrorKind::Corrupt,
            format!(
                "schema \"{schema}\" is at migration {unknown}, newer than this tidings-postgres \
                 knows (newest {newest_known}); upgrade tidings-postgres instead of running an \
                 older version against it"
            ),
        ));
    }
    let ran = conn.run_pending_migrations(MIGRATIONS).map_err(failed)?;
    Ok(MigrationReport {
        applied: ran.iter().map(MigrationVersion::to_string).collect(),
        current: newest_known,
    })
}
