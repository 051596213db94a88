//! Reading certificates, private keys and CA bundles from PEM files, with
//! errors that name the file and the flag it came from.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use super::TlsError;

/// The bytes of `path`; `what` names the flag for the error.
pub fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file (a leaf first, then its intermediates).
pub fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certificates(what, path, &read(what, path)?)
}

/// Every certificate in PEM text read from `path`.
pub fn parse_certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        expected: "CERTIFICATE block",
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error(
            "the file has no -----BEGIN CERTIFICATE----- block".into(),
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        expected: "PRIVATE KEY block",
        reason: e.to_string(),
    })
}

/// The certificates of a CA bundle as trust roots.
pub fn roots(what: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(certificates(what, path)?);
    if added == 0 {
        return Err(TlsError::Pem {
            what,
            path: path.to_path_buf(),
            expected: "usable CA certificate",
            reason: format!("{ignored} certificate(s) could not be parsed"),
        });
    }
    Ok(store)
}

/// The operating system's trust roots (for `https://` without `--tls-ca`).
pub fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        return Err(TlsError::Usage(
            "no system trust roots found (is ca-certificates installed?): pass --tls-ca FILE"
                .into(),
        ));
    }
    Ok(store)
}

/// The subject common name of a DER certificate, if it has one.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::Decode;
    let parsed = x509_cert::Certificate::from_der(cert.as_ref()).ok()?;
    parsed
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == x509_cert::der::oid::db::rfc4519::CN)
        .and_then(|atv| {
            // PrintableString, UTF8String or IA5String all decode as text here
            std::str::from_utf8(atv.value.value())
                .ok()
                .map(str::to_string)
        })
}

/// The subject of a DER certificate as text (`CN=worker-1,O=…`), for messages.
pub fn subject(cert: &CertificateDer<'_>) -> String {
    use x509_cert::der::Decode;
    match x509_cert::Certificate::from_der(cert.as_ref()) {
        Ok(c) => c.tbs_certificate.subject.to_string(),
        Err(_) => "(unparsable certificate)".into(),
    }
}

/// The issuer of a DER certificate as text, for messages.
pub fn issuer(cert: &CertificateDer<'_>) -> String {
    use x509_cert::der::Decode;
    match x509_cert::Certificate::from_der(cert.as_ref()) {
        Ok(c) => c.tbs_certificate.issuer.to_string(),
        Err(_) => "(unparsable certificate)".into(),
    }
}
