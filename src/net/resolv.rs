//! `/etc/resolv.conf` and host name resolution.
//!
//! The live image is a static musl binary: musl's `getaddrinfo` reads
//! /etc/hosts and /etc/resolv.conf on every lookup (no NSS, no cache), so once
//! [`write_resolv_conf`] has run, std's `ToSocketAddrs` resolves names. The
//! integration test checks the same with glibc in a private mount namespace.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Resolvers read at most this many `nameserver` lines (MAXNS).
pub const MAX_NAMESERVERS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ResolvError {
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot resolve {host}: {source} (check the DNS servers in /etc/resolv.conf)")]
    Lookup { host: String, source: io::Error },
    #[error("cannot resolve {host}: no addresses")]
    NoAddress { host: String },
}

/// The file's text: nameservers in order (deduplicated, at most three) and
/// the search domains.
pub fn render(dns: &[IpAddr], search: &[String]) -> String {
    let mut out = String::from("# written by p2xen\n");
    let mut seen: Vec<IpAddr> = Vec::new();
    for a in dns {
        if !seen.contains(a) {
            seen.push(*a);
        }
    }
    if seen.len() > MAX_NAMESERVERS {
        log::warn!(
            "{} DNS servers offered; resolvers use the first {MAX_NAMESERVERS}",
            seen.len()
        );
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for a in seen.iter().take(MAX_NAMESERVERS) {
        out.push_str(&format!("nameserver {a}\n"));
    }
    out
}

/// Writes resolv.conf atomically (temporary file, then rename), so a lookup
/// running meanwhile never reads half a file.
pub fn write_resolv_conf(
    path: &Path,
    dns: &[IpAddr],
    search: &[String],
) -> Result<(), ResolvError> {
    let err = |source| ResolvError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".p2xen-tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(render(dns, search).as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

/// Resolves `host` (a name or an IP literal) to socket addresses with `port`.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolvError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| ResolvError::Lookup {
            host: host.to_string(),
            source,
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ResolvError::NoAddress {
            host: host.to_string(),
        });
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_dedup_and_limits() {
        let d = |s: &str| s.parse::<IpAddr>().unwrap();
        let text = render(
            &[
                d("10.0.0.1"),
                d("10.0.0.2"),
                d("10.0.0.1"),
                d("10.0.0.3"),
                d("10.0.0.4"),
            ],
            &["lan.example".into()],
        );
        assert_eq!(
            text,
            "# written by p2xen\nsearch lan.example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
        );
    }

    #[test]
    fn writes_atomically_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/resolv.conf");
        write_resolv_conf(
            &path,
            &[IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 53))],
            &[],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# written by p2xen\nnameserver 192.0.2.53\n"
        );
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn write_errors_name_the_path() {
        let e = write_resolv_conf(Path::new("/proc/version/resolv.conf"), &[], &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/proc/version/resolv.conf: cannot write"),
            "{e}"
        );
    }

    #[test]
    fn ip_literals_need_no_resolver() {
        assert_eq!(
            resolve("192.0.2.7", 7460).unwrap(),
            vec!["192.0.2.7:7460".parse().unwrap()]
        );
        assert_eq!(
            resolve("fd00::1", 1).unwrap(),
            vec!["[fd00::1]:1".parse().unwrap()]
        );
    }
}
