//! Endpoints: upsert by address or installation, list, delete, deactivate stale ones.

use diesel_async::scoped_futures::ScopedFutureExt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use tidings::{Endpoint, StoreError, StoreErrorKind, Timestamp};

use crate::error;
use crate::rows::{platform_bit, CountRow, EndpointRow, ENDPOINT_COLUMNS};
use crate::sql::Bind;
use crate::store::{Names, TxError};

/// Deletes the pending deliveries of endpoint `$1` for user `$2` (deliveries carry the user they
/// were enqueued for, and an endpoint's pending ones always belong to its current user).
const DROP_PENDING: &str = "DELETE FROM {s}.deliveries
    WHERE endpoint_id = $1 AND user_id = $2";

/// [`Store::upsert_endpoint`](tidings::Store::upsert_endpoint), in one transaction. A race with
/// another registration of the same new address (a unique violation on insert) is retried.
pub(crate) async fn upsert(
    names: &Names,
    conn: &mut AsyncPgConnection,
    endpoint: Endpoint,
) -> Result<Endpoint, StoreError> {
    let key = endpoint.address.key();
    let hash = Sha256::digest(key.as_bytes()).to_vec();
    let address = serde_json::to_string(&endpoint.address)
        .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("address: {e}")))?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = conn
            .transaction::<_, TxError, _>(|conn| {
                let endpoint = endpoint.clone();
                let (key, hash, address) = (key.clone(), hash.clone(), address.clone());
                async move { upsert_tx(names, conn, endpoint, key, hash, address).await }
                    .scope_boxed()
            })
            .await
            .map_err(TxError::into_store);
        match result {
            Err(e) if e.kind() == StoreErrorKind::Conflict && attempts < 3 => continue,
            other => return other,
        }
    }
}

async fn upsert_tx(
    names: &Names,
    conn: &mut AsyncPgConnection,
    ep: Endpoint,
    key: String,
    hash: Vec<u8>,
    address: String,
) -> Result<Endpoint, TxError> {
    let by_address: Vec<EndpointRow> = names
        .sql(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM {{s}}.endpoints e
             WHERE e.app = $1 AND e.address_hash = $2 FOR UPDATE"
        ))
        .bind(ep.app.as_str())
        .bind_raw(Bind::Bytes(hash.clone()))
        .load(conn)
        .await?;
    let existing = match by_address.into_iter().next() {
        Some(row) => Some(row.into_endpoint()?),
        None => match &ep.installation_id {
            Some(installation) => {
                let rows: Vec<EndpointRow> = names
                    .sql(&format!(
                        "SELECT {ENDPOINT_COLUMNS} FROM {{s}}.endpoints e
                         WHERE e.user_id = $1 AND e.app = $2 AND e.installation_id = $3
                         FOR UPDATE"
                    ))
                    .bind(ep.user.as_str())
                    .bind(ep.app.as_str())
                    .bind(installation.clone())
                    .load(conn)
                    .await?;
                rows.into_iter()
                    .next()
                    .map(EndpointRow::into_endpoint)
                    .transpose()?
            }
            None => None,
        },
    };
    let row: EndpointRow = match existing {
        Some(old) => {
            let moved = old.user != ep.user || old.address.key() != key;
            if moved {
                names
                    .sql(DROP_PENDING)
                    .bind(old.id.as_uuid())
                    .bind(old.user.as_str())
                    .execute(conn)
                    .await?;
            }
            names
                .sql(&format!(
                    "UPDATE {{s}}.endpoints e SET user_id = $2, installation_id = $3,
                         platform = $4, address_key = $5, address_hash = $6, address = $7,
                         active = true, last_seen_at = $8, address_expires_at = $9,
                         deactivation_reason = NULL
                     WHERE e.id = $1
                     RETURNING {ENDPOINT_COLUMNS}"
                ))
                .bind(old.id.as_uuid())
                .bind(ep.user.as_str())
                .bind(ep.installation_id.clone())
                .bind(platform_bit(ep.platform()))
                .bind(key)
                .bind_raw(Bind::Bytes(hash))
                .bind(address)
                .bind(ep.last_seen_at)
                .bind(ep.address_expires_at)
                .get_result(conn)
                .await?
        }
        None => {
            names
                .sql(&format!(
                    "INSERT INTO {{s}}.endpoints AS e (id, app, user_id, installation_id,
                         platform, address_key, address_hash, address, active, created_at,
                         last_seen_at, address_expires_at, deactivation_reason)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                     RETURNING {ENDPOINT_COLUMNS}"
                ))
                .bind(ep.id.as_uuid())
                .bind(ep.app.as_str())
                .bind(ep.user.as_str())
                .bind(ep.installation_id.clone())
                .bind(platform_bit(ep.platform()))
                .bind(key)
                .bind_raw(Bind::Bytes(hash))
                .bind(address)
                .bind(ep.active)
                .bind(ep.created_at)
                .bind(ep.last_seen_at)
                .bind(ep.address_expires_at)
                .bind(ep.deactivation_reason.clone())
                .get_result(conn)
                .await?
        }
    };
    Ok(row.into_endpoint()?)
}

/// [`Store::endpoints`](tidings::Store::endpoints), oldest first.
pub(crate) async fn list(
    names: &Names,
    conn: &mut AsyncPgConnection,
    app: &str,
    user: &str,
) -> Result<Vec<Endpoint>, StoreError> {
    let rows: Vec<EndpointRow> = names
        .sql(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM {{s}}.endpoints e
             WHERE e.user_id = $1 AND e.app = $2 ORDER BY e.created_at, e.ord"
        ))
        .bind(user)
        .bind(app)
        .load(conn)
        .await
        .map_err(error::query)?;
    rows.into_iter().map(EndpointRow::into_endpoint).collect()
}

/// [`Store::delete_endpoint`](tidings::Store::delete_endpoint): the endpoint and its pending
/// deliveries, in one statement.
pub(crate) async fn delete(
    names: &Names,
    conn: &mut AsyncPgConnection,
    app: &str,
    user: &str,
    id: uuid::Uuid,
) -> Result<(), StoreError> {
    let row: CountRow = names
        .sql(
            "WITH e AS (
                 DELETE FROM {s}.endpoints WHERE id = $1 AND app = $2 AND user_id = $3
                 RETURNING id, user_id
             ), d AS (
                 DELETE FROM {s}.deliveries d
                 WHERE d.endpoint_id = $1 AND d.user_id = $3 AND EXISTS (SELECT 1 FROM e)
                 RETURNING 1
             )
             SELECT count(*) AS n FROM e",
        )
        .bind(id)
        .bind(app)
        .bind(user)
        .get_result(conn)
        .await
        .map_err(error::query)?;
    if row.n == 0 {
        return Err(StoreError::not_found(format!("endpoint {id}")));
    }
    Ok(())
}

/// [`Store::deactivate_stale_endpoints`](tidings::Store::deactivate_stale_endpoints), on the two
/// partial indexes `endpoints_stale` and `endpoints_address_expiry`.
pub(crate) async fn deactivate_stale(
    names: &Names,
    conn: &mut AsyncPgConnection,
    seen_before: Timestamp,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let row: CountRow = names
        .sql(
            "WITH e AS (
                 UPDATE {s}.endpoints SET active = false,
                     deactivation_reason = CASE WHEN address_expires_at <= $2
                         THEN 'address expired' ELSE 'stale' END
                 WHERE active AND (last_seen_at < $1 OR address_expires_at <= $2)
                 RETURNING id, user_id
             ), d AS (
                 -- Pending deliveries of an endpoint always belong to its current user, so
                 -- the two lists select exactly those of the deactivated endpoints.
                 DELETE FROM {s}.deliveries d
                 WHERE d.user_id = ANY (ARRAY(SELECT user_id FROM e))
                   AND d.endpoint_id = ANY (ARRAY(SELECT id FROM e))
                 RETURNING 1
             )
             SELECT count(*) AS n FROM e",
        )
        .bind(seen_before)
        .bind(now)
        .get_result(conn)
        .await
        .map_err(error::query)?;
    usize::try_from(row.n).map_err(error::corrupt)
}
