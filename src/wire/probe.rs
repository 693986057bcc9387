//! Asks a receiver which certificate it presents, for the menu's "compare
//! the fingerprint" step. The handshake is abandoned as soon as the
//! certificate is seen: nothing is trusted or sent here; the copy itself
//! pins the fingerprint the user confirmed.

use rustls::ClientConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::tls;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot resolve {server}: {source}")]
    Resolve {
        server: String,
        source: std::io::Error,
    },
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{server} presented no certificate ({why}); is it `p2xen receive`?")]
    NoCertificate { server: String, why: String },
}

/// Records the end-entity certificate and refuses it, ending the handshake.
#[derive(Debug)]
struct Capture {
    seen: Mutex<Option<Vec<u8>>>,
    schemes: Vec<SignatureScheme>,
}

fn probe_only() -> rustls::Error {
    rustls::Error::General("fingerprint probe only".into())
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(end_entity.as_ref().to_vec());
        }
        Err(probe_only())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(probe_only())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(probe_only())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// `sha256:HEX` of the certificate the TLS server at `server` (HOST:PORT)
/// presents.
pub fn receiver_fingerprint(server: &str) -> Result<String, ProbeError> {
    let capture = Arc::new(Capture {
        seen: Mutex::new(None),
        schemes: tls::verify_schemes(),
    });
    let config = tls::client_config_with(capture.clone())?;
    let addr = server
        .to_socket_addrs()
        .map_err(|source| ProbeError::Resolve {
            server: server.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| ProbeError::NoAddress(server.to_string()))?;
    let mut tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|source| ProbeError::Connect { addr, source })?;
    tcp.set_read_timeout(Some(TIMEOUT)).ok();
    tcp.set_write_timeout(Some(TIMEOUT)).ok();
    let mut conn = ClientConnection::new(config, tls::server_name())?;
    // Runs until the verifier refuses (expected) or the peer gives up.
    let outcome = loop {
        match conn.complete_io(&mut tcp) {
            Ok(_) if conn.is_handshaking() => continue,
            Ok(_) => break None,
            Err(e) => break Some(e),
        }
    };
    let seen = capture.seen.lock().ok().and_then(|s| s.clone());
    match seen {
        Some(der) => Ok(tls::fingerprint(&der)),
        None => Err(ProbeError::NoCertificate {
            server: server.to_string(),
            why: outcome.map_or_else(|| "handshake ended".to_string(), |e| e.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn reports_the_presented_certificate() {
        let d = tempfile::tempdir().unwrap();
        let id = tls::Identity::load_or_create(d.path()).unwrap();
        let cfg = tls::server_config(&id).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut conn = rustls::ServerConnection::new(cfg).unwrap();
            while conn.is_handshaking() {
                if conn.complete_io(&mut tcp).is_err() {
                    break;
                }
            }
        });
        assert_eq!(
            receiver_fingerprint(&addr.to_string()).unwrap(),
            id.fingerprint()
        );
        server.join().unwrap();
        // Nobody listening: a message naming the address.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        let err = receiver_fingerprint(&gone.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("cannot connect to {gone}")),
            "{err}"
        );
    }
}
