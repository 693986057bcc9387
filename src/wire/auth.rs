//! The sender's proof: a shared random token, compared in constant time.

use subtle::ConstantTimeEq;

/// Bytes of randomness in a generated token (hex-encoded to twice as many chars).
pub const TOKEN_BYTES: usize = 24;

/// True when `offered` equals `expected`. Constant time in the contents, so a
/// network attacker cannot learn the token prefix by prefix from timing.
pub fn token_matches(expected: &str, offered: &str) -> bool {
    // Hashing first makes the comparison length-independent as well.
    let a = blake3::hash(expected.as_bytes());
    let b = blake3::hash(offered.as_bytes());
    bool::from(a.as_bytes().ct_eq(b.as_bytes())) && !expected.is_empty()
}

/// Who holds `token`, as recorded in a migration's resume state: a derived
/// hash, so the state directory's journals do not repeat the token itself.
pub fn token_owner(token: &str) -> String {
    hex(&blake3::derive_key(
        "p2xen 2026 migration owner",
        token.as_bytes(),
    ))
}

/// A fresh random token (lower-case hex).
pub fn generate_token() -> Result<String, rustls::Error> {
    let mut buf = [0u8; TOKEN_BYTES];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .map_err(|_| rustls::Error::General("no system randomness".into()))?;
    Ok(hex(&buf))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        let t = generate_token().unwrap();
        assert_eq!(t.len(), TOKEN_BYTES * 2);
        assert!(token_matches(&t, &t));
        assert!(!token_matches(&t, &t[1..]));
        assert!(!token_matches(&t, ""));
        assert!(!token_matches("", ""));
        assert_ne!(t, generate_token().unwrap());
    }

    #[test]
    fn owners_differ_by_token_and_do_not_contain_it() {
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert_eq!(token_owner(&a), token_owner(&a));
        assert_ne!(token_owner(&a), token_owner(&b));
        assert!(!token_owner(&a).contains(&a));
    }
}
