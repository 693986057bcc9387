//! The migration name: chosen on the sender (`--name`, or the server's
//! hostname), it becomes a directory or LV name on dom0 and the guest's
//! domain name, so both ends check it here, the same way.

use std::fmt;

/// A checked migration name: 1-64 of `A-Za-z0-9._-`, not `.`, not starting
/// with `-` (an option to lvm2 and xl), no `..` (a path step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid migration name {0:?}: use letters, digits, '.', '-', '_' (no '/', '..' or control characters, at most 64)"
)]
pub struct BadName(pub String);

impl MigrationName {
    pub fn parse(name: &str) -> Result<Self, BadName> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name != "."
            && !name.contains("..")
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if ok {
            Ok(MigrationName(name.to_string()))
        } else {
            Err(BadName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MigrationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["seed", "web-01", "db_2.example"] {
            assert_eq!(
                MigrationName::parse(good).map(|n| n.to_string()),
                Ok(good.to_string())
            );
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a..b",
            "a\nb",
            "tab\t",
            "-rf",
            &"x".repeat(65),
        ] {
            assert_eq!(
                MigrationName::parse(bad),
                Err(BadName(bad.to_string())),
                "{bad:?}"
            );
        }
    }
}
