//! Throwaway TLS certificates for tests.

use std::{
    fs,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

/// A CA, a server certificate for `127.0.0.1`/`localhost` and a client
/// certificate, written as PEM files into a temporary directory that lives as
/// long as this value.
#[derive(Debug)]
pub struct TestCerts {
    dir: TempDir,
}

impl TestCerts {
    /// Generates a fresh CA and the two certificates it signs.
    ///
    /// # Panics
    /// When key generation or writing the temp files fails.
    pub fn generate() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("backbone-certs-")
            .tempdir()
            .expect("creating the certificate dir");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Backbone test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-signing the CA");
        write(dir.path(), "ca.pem", &ca.pem());

        let leaf = |name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut params = CertificateParams::new(sans).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &ca).expect("signing a leaf");
            (cert.pem(), key.serialize_pem())
        };

        let (server_cert, server_key) = leaf(
            "backbone test server",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        write(dir.path(), "server-cert.pem", &server_cert);
        write(dir.path(), "server-key.pem", &server_key);

        let (client_cert, client_key) = leaf(
            "backbone test client",
            vec!["client.backbone.test".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        write(dir.path(), "client-cert.pem", &client_cert);
        write(dir.path(), "client-key.pem", &client_key);

        Self { dir }
    }

    /// The CA certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate, valid for `127.0.0.1` and `localhost`.
    pub fn server_cert_file(&self) -> PathBuf {
        self.dir.path().join("server-cert.pem")
    }

    /// The server's private key.
    pub fn server_key_file(&self) -> PathBuf {
        self.dir.path().join("server-key.pem")
    }

    /// The client certificate.
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join("client-cert.pem")
    }

    /// The client's private key.
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.path().join("client-key.pem")
    }

    /// A path inside the certificate directory (for tests of missing files).
    pub fn dir_file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Server TLS settings using these files; `verify` requires client
    /// certificates signed by the CA.
    pub fn server_tls(&self, verify: bool) -> crate::ServerTls {
        crate::ServerTls {
            cert_file: self.server_cert_file(),
            key_file: self.server_key_file(),
            ca_file: Some(self.ca_file()),
            verify,
        }
    }
}

fn write(dir: &Path, name: &str, pem: &str) {
    fs::write(dir.join(name), pem).unwrap_or_else(|e| panic!("writing {name}: {e}"));
}

#[cfg(test)]
mod tests {
    use super::TestCerts;

    #[test]
    fn writes_every_pem_file() {
        let certs = TestCerts::generate();
        for path in [
            certs.ca_file(),
            certs.server_cert_file(),
            certs.server_key_file(),
            certs.client_cert_file(),
            certs.client_key_file(),
        ] {
            let text = std::fs::read_to_string(&path).expect("readable");
            assert!(text.starts_with("-----BEGIN"), "{} is PEM", path.display());
        }
    }
}
