//! The [`Identity`] trait: client credentials to principals.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::IdentityError;
use crate::id::{AppId, UserId};

/// A credential a client presented (a bearer token). Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential(String);

impl Credential {
    /// Wraps a bearer credential.
    pub fn bearer(token: impl Into<String>) -> Self {
        Credential(token.into())
    }

    /// The secret text. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential(<redacted>)")
    }
}

/// Who a client is: a user of an app. A principal sees only its own user's data in its own app.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// The app.
    pub app: AppId,
    /// The user.
    pub user: UserId,
}

impl Principal {
    /// A principal.
    pub fn new(app: impl Into<AppId>, user: impl Into<UserId>) -> Self {
        Principal {
            app: app.into(),
            user: user.into(),
        }
    }
}

/// Turns a client credential into a principal.
///
/// Hosts implement it with their own sessions or tokens; Tidings ships `StaticIdentity`
/// (tidings-memory) for tests and a JWT identity with the client API.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Identity: Send + Sync + fmt::Debug + 'static {
    /// Authenticates `credential`.
    async fn authenticate(&self, credential: &Credential) -> Result<Principal, IdentityError>;
}
