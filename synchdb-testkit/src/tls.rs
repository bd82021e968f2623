//! Self-signed certificates for servers that speak TLS.
//!
//! [`TlsFiles::generate`] makes a fresh certificate authority, a server certificate it
//! signs (for the names given, e.g. `127.0.0.1` and `localhost`) and a second, unrelated
//! "wrong" CA, and writes them as PEM files into a temporary directory that lives as
//! long as the [`TlsFiles`]. Start servers with them through
//! [`MariaDb::start_with_args`](crate::MariaDb::start_with_args) (see
//! [`TlsFiles::mariadb_args`]) and [`Postgres::start_with_tls`](crate::Postgres::start_with_tls).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::util::io_err;
use crate::TestkitError;

/// A CA, a server certificate and key signed by it, and an unrelated CA, as PEM files.
///
/// Files (all in [`dir`](TlsFiles::dir)): `ca.crt`, `server.crt`, `server.key` (mode
/// 0600) and `wrong-ca.crt`. The certificates are valid from 1975 to 4096 (rcgen's
/// defaults), so no clock matters.
#[derive(Debug)]
pub struct TlsFiles {
    dir: TempDir,
    names: Vec<String>,
}

impl TlsFiles {
    /// Generate a CA and a server certificate for `names` (IP addresses become IP
    /// subject alternative names, anything else DNS names), plus a second CA that
    /// signed nothing here.
    pub fn generate(names: &[&str]) -> Result<TlsFiles, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("synchdb-testkit-tls-")
            .tempdir()
            .map_err(io_err("create a temporary directory for certificates"))?;
        let files = TlsFiles { dir, names: names.iter().map(|n| n.to_string()).collect() };

        let (ca_pem, issuer) = new_ca("synchdb testkit CA")?;
        let (wrong_ca_pem, _) = new_ca("synchdb testkit unrelated CA")?;

        let mut params = CertificateParams::new(files.names.clone()).map_err(rcgen_err("server names"))?;
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("server"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(rcgen_err("server key"))?;
        let cert = params.signed_by(&key, &issuer).map_err(rcgen_err("server certificate"))?;

        files.write("ca.crt", ca_pem.as_bytes(), 0o644)?;
        files.write("wrong-ca.crt", wrong_ca_pem.as_bytes(), 0o644)?;
        files.write("server.crt", cert.pem().as_bytes(), 0o644)?;
        files.write("server.key", key.serialize_pem().as_bytes(), 0o600)?;
        Ok(files)
    }

    /// [`generate`](TlsFiles::generate) for `127.0.0.1` and `localhost`, the names the
    /// private servers are reached by.
    pub fn localhost() -> Result<TlsFiles, TestkitError> {
        TlsFiles::generate(&["127.0.0.1", "localhost"])
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The names the server certificate is valid for.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The CA certificate that signed the server certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A CA certificate that did not sign the server certificate.
    pub fn wrong_ca_cert(&self) -> PathBuf {
        self.dir.path().join("wrong-ca.crt")
    }

    /// The server certificate.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    /// The server's private key (PKCS#8 PEM, mode 0600).
    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// `mariadbd` options serving these certificates: `--ssl-cert`, `--ssl-key`,
    /// `--ssl-ca`. Add `--require-secure-transport=ON` to refuse TCP without TLS.
    pub fn mariadb_args(&self) -> Vec<String> {
        vec![
            format!("--ssl-cert={}", self.server_cert().display()),
            format!("--ssl-key={}", self.server_key().display()),
            format!("--ssl-ca={}", self.ca_cert().display()),
        ]
    }

    fn write(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), TestkitError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.path().join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io_err(format!("create {}", path.display())))?;
        file.write_all(contents).map_err(io_err(format!("write {}", path.display())))
    }
}

/// A self-signed CA: its PEM certificate and an issuer to sign with.
fn new_ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>), TestkitError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err("CA parameters"))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationName, "synchdb tests");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(rcgen_err("CA key"))?;
    let cert = params.self_signed(&key).map_err(rcgen_err("CA certificate"))?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn rcgen_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> TestkitError {
    move |e| TestkitError::Io {
        context: format!("generate the test {what}"),
        source: std::io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files() {
        let files = TlsFiles::localhost().unwrap();
        for p in [files.ca_cert(), files.wrong_ca_cert(), files.server_cert()] {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{}", p.display());
        }
        let key = std::fs::read_to_string(files.server_key()).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(files.server_key()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(std::fs::read(files.ca_cert()).unwrap(), std::fs::read(files.wrong_ca_cert()).unwrap());
    }
}
