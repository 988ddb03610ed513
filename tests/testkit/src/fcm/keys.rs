//! FCM credentials for tests: a Google service account with an RSA-2048 key.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use serde_json::json;

use crate::gateway::{pem_decode, pem_encode, sign_jwt};

/// The OAuth scope FCM sends need.
pub const MESSAGING_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The broader scope that also works for FCM.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

#[derive(Debug)]
struct RsaKey {
    pkcs8: Vec<u8>,
    public_pkcs1: Vec<u8>,
}

fn generate_rsa() -> RsaKey {
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA-2048 key generation");
    let pkcs8 = pair
        .as_der()
        .expect("PKCS#8 encoding of an RSA key")
        .as_ref()
        .to_vec();
    RsaKey {
        public_pkcs1: pair.public_key().as_ref().to_vec(),
        pkcs8,
    }
}

/// RSA key generation is slow in debug builds: one key per process serves every
/// [`ServiceAccount::generate`].
fn shared_rsa() -> Arc<RsaKey> {
    static KEY: OnceLock<Arc<RsaKey>> = OnceLock::new();
    Arc::clone(KEY.get_or_init(|| Arc::new(generate_rsa())))
}

/// A Google service account as its JSON key file describes it: `project_id`, `client_email`,
/// `private_key_id`, an RSA-2048 `private_key` and `token_uri` (pointing at the mock).
///
/// Built in memory; [`FcmMock::service_account`](super::FcmMock::service_account) makes one and
/// registers it. `Debug` never shows the private key.
#[derive(Clone)]
pub struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key_id: String,
    token_uri: String,
    key: Arc<RsaKey>,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

impl ServiceAccount {
    /// A service account of `project_id` whose tokens come from `token_uri`. All accounts of a
    /// process share one RSA key (generating one takes long in debug builds); use
    /// [`generate_with_own_key`](Self::generate_with_own_key) when a test needs distinct keys.
    pub fn generate(project_id: &str, token_uri: &str) -> ServiceAccount {
        Self::with_key(project_id, token_uri, shared_rsa())
    }

    /// Like [`generate`](Self::generate), with a freshly generated RSA key.
    pub fn generate_with_own_key(project_id: &str, token_uri: &str) -> ServiceAccount {
        Self::with_key(project_id, token_uri, Arc::new(generate_rsa()))
    }

    fn with_key(project_id: &str, token_uri: &str, key: Arc<RsaKey>) -> ServiceAccount {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        ServiceAccount {
            project_id: project_id.to_owned(),
            client_email: format!(
                "firebase-adminsdk-{}@{project_id}.iam.gserviceaccount.com",
                &unique[..5]
            ),
            private_key_id: unique,
            token_uri: token_uri.to_owned(),
            key,
        }
    }

    /// Parses a service-account JSON key file; `None` if a field is missing or the key is not
    /// a PKCS#8 RSA key.
    pub fn from_json(text: &str) -> Option<ServiceAccount> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let field = |name: &str| v.get(name).and_then(|f| f.as_str()).map(str::to_owned);
        let pkcs8 = pem_decode("PRIVATE KEY", &field("private_key")?)?;
        let pair = KeyPair::from_pkcs8(&pkcs8).ok()?;
        Some(ServiceAccount {
            project_id: field("project_id")?,
            client_email: field("client_email")?,
            private_key_id: field("private_key_id")?,
            token_uri: field("token_uri")?,
            key: Arc::new(RsaKey {
                public_pkcs1: pair.public_key().as_ref().to_vec(),
                pkcs8,
            }),
        })
    }

    /// The Firebase project id.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The account's e-mail (the assertion's `iss`).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The key id (the assertion header's optional `kid`).
    pub fn private_key_id(&self) -> &str {
        &self.private_key_id
    }

    /// Where access tokens come from (the assertion's `aud`).
    pub fn token_uri(&self) -> &str {
        &self.token_uri
    }

    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn private_key_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.key.pkcs8)
    }

    /// The public key as a PKCS#1 `RSAPublicKey` (DER), what the mock verifies with.
    pub fn public_key_pkcs1(&self) -> &[u8] {
        &self.key.public_pkcs1
    }

    /// The JSON key file, as Google's console downloads it.
    pub fn to_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem(),
            "client_email": self.client_email,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                self.client_email
            ),
            "universe_domain": "googleapis.com",
        })
        .to_string()
    }

    /// A token-request assertion issued at `iat` (UNIX seconds; use
    /// [`FcmMock::now`](super::FcmMock::now)), valid one hour, for the messaging scope.
    pub fn assertion(&self, iat: i64) -> String {
        self.sign_claims(&json!({
            "iss": self.client_email,
            "scope": MESSAGING_SCOPE,
            "aud": self.token_uri,
            "iat": iat,
            "exp": iat + 3600,
        }))
    }

    /// Signs arbitrary claims (RS256, header with `kid`), for malformed-assertion tests.
    pub fn sign_claims(&self, claims: &serde_json::Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.private_key_id});
        let pair = KeyPair::from_pkcs8(&self.key.pkcs8).expect("a PKCS#8 RSA key");
        let rng = SystemRandom::new();
        sign_jwt(&header, claims, |input| {
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(&RSA_PKCS1_SHA256, &rng, input, &mut signature)
                .expect("RSA signing");
            signature
        })
    }
}

/// Whether an RS256 `signature` over `input` verifies with the PKCS#1 `public` key.
pub(crate) fn verify_rs256(public: &[u8], input: &[u8], signature: &[u8]) -> bool {
    aws_lc_rs::signature::UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public)
        .verify(input, signature)
        .is_ok()
}
