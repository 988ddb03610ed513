//! The mock's certificate authority, server certificate and client identities (rcgen + rustls).

use std::fmt;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// A client identity for certificate-based APNs authentication: a certificate issued by the
/// mock's CA and its private key. `Debug` never shows the key.
#[derive(Clone)]
pub struct ApnsClientIdentity {
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for ApnsClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsClientIdentity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl ApnsClientIdentity {
    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Key and certificate in one PEM document (what `reqwest::Identity::from_pem` takes).
    pub fn pem(&self) -> String {
        format!("{}{}", self.key_pem, self.cert_pem)
    }
}

/// The mock's CA; it signs the server certificate and client identities.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    pub(crate) fn generate() -> TestCa {
        let key = KeyPair::generate().expect("CA key generation");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, "tidings-testkit mock APNs CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signing the CA");
        TestCa {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub(crate) fn cert_der(&self) -> &[u8] {
        self.cert_der.as_ref()
    }

    fn issue(
        &self,
        sans: Vec<String>,
        common_name: &str,
        eku: ExtendedKeyUsagePurpose,
    ) -> (CertificateDer<'static>, String, KeyPair) {
        let key = KeyPair::generate().expect("leaf key generation");
        let mut params = CertificateParams::new(sans).expect("leaf parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![eku];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a leaf certificate");
        (cert.der().clone(), cert.pem(), key)
    }

    /// A client identity as Apple would issue it for `topic`.
    pub(crate) fn client_identity(&self, topic: &str) -> ApnsClientIdentity {
        let (_, cert_pem, key) = self.issue(
            Vec::new(),
            &format!("Apple Push Services: {topic}"),
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        ApnsClientIdentity {
            cert_pem,
            key_pem: key.serialize_pem(),
        }
    }

    /// The rustls server configuration: a certificate for 127.0.0.1 and localhost, ALPN h2, and
    /// (certificate mode) a required client certificate issued by this CA.
    pub(crate) fn server_config(&self, require_client_cert: bool) -> Arc<ServerConfig> {
        let (cert, _, key) = self.issue(
            vec!["127.0.0.1".into(), "localhost".into()],
            "api.push.apple.com (tidings-testkit mock)",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("TLS protocol versions");
        let builder = if require_client_cert {
            let mut roots = RootCertStore::empty();
            roots
                .add(self.cert_der.clone())
                .expect("adding the mock CA to the client roots");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client certificate verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(vec![cert, self.cert_der.clone()], key)
            .expect("server certificate and key");
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }
}
