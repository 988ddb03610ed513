//! [`StaticIdentity`]: a fixed map from credentials to principals.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use tidings::{Credential, Identity, IdentityError, IdentityErrorKind, Principal};

/// An [`Identity`] that knows a fixed set of bearer credentials, each standing for one
/// [`Principal`]: for tests and demos.
///
/// An empty credential is [`IdentityErrorKind::Missing`]; one it does not know is
/// [`IdentityErrorKind::Invalid`]. `Debug` shows the principals, never the credentials.
///
/// ```
/// use tidings::{Credential, Identity, Principal};
/// use tidings_memory::StaticIdentity;
///
/// # tokio_test_block(async {
/// let identity = StaticIdentity::new().with("alice-token", Principal::new("chat", "alice"));
/// let who = identity.authenticate(&Credential::bearer("alice-token")).await.unwrap();
/// assert_eq!(who, Principal::new("chat", "alice"));
/// assert!(identity.authenticate(&Credential::bearer("guess")).await.is_err());
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Default)]
pub struct StaticIdentity {
    principals: HashMap<String, Principal>,
}

impl StaticIdentity {
    /// An identity that knows no credential yet.
    pub fn new() -> Self {
        StaticIdentity::default()
    }

    /// This identity, also knowing `credential` as `principal` (replacing an earlier entry for
    /// the same credential).
    #[must_use]
    pub fn with(mut self, credential: impl Into<String>, principal: Principal) -> Self {
        self.insert(credential, principal);
        self
    }

    /// Shorthand for [`with`](Self::with) and [`Principal::new`].
    #[must_use]
    pub fn with_user(
        self,
        credential: impl Into<String>,
        app: impl Into<tidings::AppId>,
        user: impl Into<tidings::UserId>,
    ) -> Self {
        self.with(credential, Principal::new(app, user))
    }

    /// Adds or replaces `credential`.
    pub fn insert(&mut self, credential: impl Into<String>, principal: Principal) {
        self.principals.insert(credential.into(), principal);
    }

    /// Forgets `credential` (it becomes invalid). Returns whether it was known.
    pub fn revoke(&mut self, credential: &str) -> bool {
        self.principals.remove(credential).is_some()
    }

    /// How many credentials it knows.
    pub fn len(&self) -> usize {
        self.principals.len()
    }

    /// Whether it knows no credential.
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }
}

impl fmt::Debug for StaticIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut principals: Vec<&Principal> = self.principals.values().collect();
        principals.sort_by(|a, b| (&a.app, &a.user).cmp(&(&b.app, &b.user)));
        f.debug_struct("StaticIdentity")
            .field("credentials", &self.principals.len())
            .field("principals", &principals)
            .finish()
    }
}

#[async_trait]
impl Identity for StaticIdentity {
    async fn authenticate(&self, credential: &Credential) -> Result<Principal, IdentityError> {
        let secret = credential.expose();
        if secret.trim().is_empty() {
            return Err(IdentityError::new(
                IdentityErrorKind::Missing,
                "no credential was presented",
            ));
        }
        self.principals
            .get(secret)
            .cloned()
            .ok_or_else(|| IdentityError::new(IdentityErrorKind::Invalid, "unknown credential"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> StaticIdentity {
        StaticIdentity::new()
            .with_user("alice-secret-token", "chat", "alice")
            .with_user("bob-secret-token", "chat", "bob")
    }

    #[tokio::test]
    async fn known_credential_maps_to_its_principal() {
        let who = identity()
            .authenticate(&Credential::bearer("bob-secret-token"))
            .await
            .unwrap();
        assert_eq!(who, Principal::new("chat", "bob"));
    }

    #[tokio::test]
    async fn empty_credential_is_missing_and_unknown_is_invalid() {
        let id = identity();
        let missing = id.authenticate(&Credential::bearer("")).await.unwrap_err();
        assert_eq!(missing.kind(), IdentityErrorKind::Missing);
        let unknown = id
            .authenticate(&Credential::bearer("mallory-token"))
            .await
            .unwrap_err();
        assert_eq!(unknown.kind(), IdentityErrorKind::Invalid);
    }

    #[tokio::test]
    async fn revoked_credential_stops_working() {
        let mut id = identity();
        assert!(id.revoke("alice-secret-token"));
        let e = id
            .authenticate(&Credential::bearer("alice-secret-token"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), IdentityErrorKind::Invalid);
        assert_eq!(id.len(), 1);
    }

    #[test]
    fn debug_shows_principals_but_not_credentials() {
        let shown = format!("{:?}", identity());
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("bob"), "{shown}");
    }
}
