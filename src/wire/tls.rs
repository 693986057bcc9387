//! TLS 1.3 with the receiver's self-signed certificate pinned by its SHA-256
//! fingerprint. There is no CA: the fingerprint travels out of band (printed
//! by `p2xen receive`, pasted into the kernel parameters or the menu).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::auth::hex;

/// The name the receiver's certificate is issued for. The sender connects
/// with this SNI whatever the address, since only the fingerprint matters.
pub const CERT_NAME: &str = "p2xen-receiver";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("generating the receiver certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("fingerprint {0:?} is not of the form sha256:<64 hex digits>")]
    BadFingerprint(String),
}

/// The receiver presented another certificate than the pinned one. It
/// travels through rustls as an `InvalidCertificate` error; the sender gets
/// it back with [`fingerprint_mismatch`].
#[derive(Debug, thiserror::Error)]
#[error(
    "receiver certificate fingerprint is {got}, expected {expected}: wrong receiver or wrong --fingerprint"
)]
pub struct FingerprintMismatch {
    pub got: String,
    pub expected: String,
}

/// The fingerprint mismatch inside a failed handshake's error, if that was
/// the failure.
pub fn fingerprint_mismatch(err: &rustls::Error) -> Option<&FingerprintMismatch> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(e))) => {
            e.downcast_ref::<FingerprintMismatch>()
        }
        _ => None,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The receiver's certificate and key (DER files in the state directory).
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Identity {
    /// Loads `cert.der`/`key.der` from `dir`, creating them (mode 0600) on first start.
    pub fn load_or_create(dir: &Path) -> Result<Identity, TlsError> {
        let cert_path = dir.join("cert.der");
        let key_path = dir.join("key.der");
        let read = |p: &Path| {
            fs::read(p).map_err(|source| TlsError::File {
                path: p.to_path_buf(),
                source,
            })
        };
        if cert_path.exists() && key_path.exists() {
            return Ok(Identity {
                cert: CertificateDer::from(read(&cert_path)?),
                key: read(&key_path)?,
            });
        }
        let ck = rcgen::generate_simple_self_signed(vec![CERT_NAME.to_string()])?;
        let key = ck.key_pair.serialize_der();
        write_private(&key_path, &key)?;
        write_private(&cert_path, ck.cert.der())?;
        Ok(Identity {
            cert: ck.cert.der().clone(),
            key,
        })
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }
}

/// Writes a new file readable by its owner only (replacing an older one).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    let err = |source| TlsError::File {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// `sha256:<hex>` of a DER certificate.
pub fn fingerprint(cert: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(cert)))
}

/// Parses `sha256:HEX` (colons between hex pairs allowed, any case).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], TlsError> {
    let bad = || TlsError::BadFingerprint(s.to_string());
    let hexpart = s
        .trim()
        .strip_prefix("sha256:")
        .or_else(|| s.trim().strip_prefix("SHA256:"))
        .ok_or_else(bad)?;
    let digits: Vec<u8> = hexpart.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let txt = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(txt, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

pub fn server_config(id: &Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.clone()));
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], key)?;
    // No session tickets: senders never resume TLS sessions, and without
    // them any readable byte from the receiver mid-copy is a real message
    // (the sender polls for a refusal while it streams).
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

pub fn client_config(pinned: [u8; 32]) -> Result<Arc<ClientConfig>, TlsError> {
    let algs = provider().signature_verification_algorithms;
    client_config_with(Arc::new(PinnedCert { pinned, algs }))
}

/// A TLS 1.3 client that judges the receiver's certificate with `verifier`
/// (there is no CA: the certificate is pinned, or only looked at).
pub(super) fn client_config_with(
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The signature schemes this build verifies.
pub(super) fn verify_schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}

pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from(CERT_NAME).expect("static name is valid"),
    )
}

/// Accepts exactly the certificate whose SHA-256 is pinned; the handshake
/// signature is still checked against that certificate's key, so holding a
/// copy of the certificate without the key does not help an impostor.
#[derive(Debug)]
struct PinnedCert {
    pinned: [u8; 32],
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Sha256::digest(end_entity.as_ref());
        if bool::from(got.as_slice().ct_eq(&self.pinned)) {
            Ok(ServerCertVerified::assertion())
        } else {
            let mismatch = FingerprintMismatch {
                got: fingerprint(end_entity),
                expected: format!("sha256:{}", hex(&self.pinned)),
            };
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(mismatch)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The config allows TLS 1.3 only; a 1.2 signature means a downgrade.
        Err(rustls::Error::General("TLS 1.2 is not allowed".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_both_spellings() {
        let fp = fingerprint(b"abc");
        let raw = parse_fingerprint(&fp).unwrap();
        assert_eq!(raw.as_slice(), Sha256::digest(b"abc").as_slice());
        let colons: Vec<String> = raw.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{}", colons.join(":"))).unwrap(),
            raw
        );
        assert!(parse_fingerprint("sha256:abcd").is_err());
        assert!(parse_fingerprint(&fp.replace("sha256:", "md5:")).is_err());
    }

    #[test]
    fn identity_files_are_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(d.path()).unwrap();
        let b = Identity::load_or_create(d.path()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        for f in ["cert.der", "key.der"] {
            let mode = fs::metadata(d.path().join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        server_config(&a).unwrap();
        client_config(parse_fingerprint(&a.fingerprint()).unwrap()).unwrap();
    }

    #[test]
    fn a_certificate_other_than_the_pinned_one_is_a_typed_mismatch() {
        let d = tempfile::tempdir().unwrap();
        let id = Identity::load_or_create(d.path()).unwrap();
        let algs = provider().signature_verification_algorithms;
        let verify = |pinned| {
            PinnedCert { pinned, algs }.verify_server_cert(
                &id.cert,
                &[],
                &server_name(),
                &[],
                UnixTime::now(),
            )
        };
        assert!(verify(parse_fingerprint(&id.fingerprint()).unwrap()).is_ok());
        let err = verify([7; 32]).unwrap_err();
        let mismatch = fingerprint_mismatch(&err).expect("a fingerprint mismatch");
        assert_eq!(mismatch.got, id.fingerprint());
        assert_eq!(mismatch.expected, format!("sha256:{}", "07".repeat(32)));
        assert!(fingerprint_mismatch(&rustls::Error::General("x".into())).is_none());
    }
}
