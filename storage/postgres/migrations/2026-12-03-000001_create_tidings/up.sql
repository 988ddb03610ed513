-- Tidings' tables. Applied by `PgStore::migrate()` with `search_path` set to the store's own schema
-- (default `tidings`), so every name here is unqualified.
--
-- Index order: every per-user index starts with user_id, then app. Both are equality columns in
-- every query, so the order does not change any plan, and `delete_user` (which erases a user in
-- every app) can use the same indexes instead of needing its own.

CREATE TABLE endpoints (
    id uuid PRIMARY KEY,
    -- Insertion order, so "oldest first" is stable when two endpoints share a creation time.
    ord bigint GENERATED ALWAYS AS IDENTITY,
    app text NOT NULL,
    user_id text NOT NULL,
    installation_id text,
    -- The PlatformSet bit of the address' platform: apns=1, fcm=2, wns=4, webpush=8.
    platform smallint NOT NULL CHECK (platform IN (1, 2, 4, 8)),
    -- PushAddress::key() and its SHA-256 (keys can exceed a B-tree entry's size limit).
    address_key text NOT NULL,
    address_hash bytea NOT NULL,
    -- The whole PushAddress as JSON.
    address text NOT NULL,
    active boolean NOT NULL,
    created_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    address_expires_at timestamptz,
    deactivation_reason text
);
CREATE UNIQUE INDEX endpoints_app_address ON endpoints (app, address_hash);
CREATE UNIQUE INDEX endpoints_installation ON endpoints (user_id, app, installation_id)
    WHERE installation_id IS NOT NULL;
CREATE INDEX endpoints_user ON endpoints (user_id, app, created_at, ord);
CREATE INDEX endpoints_stale ON endpoints (last_seen_at) WHERE active;
CREATE INDEX endpoints_address_expiry ON endpoints (address_expires_at)
    WHERE active AND address_expires_at IS NOT NULL;

-- The per-(app, user) change sequence: one counter row, bumped with an upsert whose row lock
-- also orders concurrent changes of one user.
CREATE TABLE user_sequences (
    user_id text NOT NULL,
    app text NOT NULL,
    sequence bigint NOT NULL,
    PRIMARY KEY (user_id, app)
);

CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    app text NOT NULL,
    user_id text NOT NULL,
    app_notification_id text NOT NULL,
    grp text,
    priority text NOT NULL CHECK (priority IN ('low', 'normal', 'high')),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    display_ttl_ns bigint,
    visual_title text,
    visual_body text,
    raw text,
    targets smallint NOT NULL,
    fallback_delay_ns bigint,
    fallback_title text,
    fallback_body text,
    read text NOT NULL CHECK (read IN ('unread', 'read')),
    action text NOT NULL CHECK (action IN ('none', 'activated', 'dismissed', 'snoozed')),
    status text NOT NULL CHECK (status IN ('active', 'deleted')),
    changed_at timestamptz NOT NULL,
    sequence bigint NOT NULL
);
CREATE UNIQUE INDEX notifications_idempotency ON notifications (user_id, app, app_notification_id);
CREATE INDEX notifications_history ON notifications (user_id, app, created_at DESC, id DESC);
CREATE INDEX notifications_changes ON notifications (user_id, app, sequence);
CREATE INDEX notifications_expiry ON notifications (expires_at);

-- The outbox. A leased delivery stays 'pending' with its next_attempt_at moved to the lease
-- deadline, so the partial due index alone finds both due work and lapsed leases.
CREATE TABLE deliveries (
    id uuid PRIMARY KEY,
    app text NOT NULL,
    user_id text NOT NULL,
    endpoint_id uuid NOT NULL,
    notification_id uuid,
    kind text NOT NULL CHECK (kind IN ('notification', 'sync', 'fallback_alert')),
    sequence bigint NOT NULL,
    attempt integer NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    lease_token uuid,
    lease_until timestamptz,
    last_error text,
    provider_message_id text,
    finished_at timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_notification ON deliveries (notification_id);
CREATE INDEX deliveries_user_endpoint ON deliveries (user_id, endpoint_id);
CREATE INDEX deliveries_sync_expiry ON deliveries (expires_at) WHERE notification_id IS NULL;
