//! The cluster credential: a shared secret every internal call carries
//! (`Authorization: Bearer …`) and every internal listener checks, so nothing outside
//! the cluster can append to a partition or rewrite a group by calling a storage node
//! directly. Never printed: `Debug` is redacted and the header is marked sensitive.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Fewest bytes a cluster secret may have (`fjord` writes 32 random bytes as hex).
pub const MIN_SECRET_LEN: usize = 32;

/// The shared secret of a cluster's internal API.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Arc<str>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// A secret of at least [`MIN_SECRET_LEN`] visible ASCII characters (surrounding
    /// whitespace, such as a file's final newline, is ignored).
    pub fn new(secret: &str) -> Result<Self, String> {
        let s = secret.trim();
        if s.len() < MIN_SECRET_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "a cluster secret must be at least {MIN_SECRET_LEN} visible ASCII characters (no spaces)"
            ));
        }
        Ok(Self(s.into()))
    }

    /// The secret in `path` (the error names the file, never its content).
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::new(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The `Authorization` header value internal calls carry.
    pub fn header_value(&self) -> reqwest::header::HeaderValue {
        let mut v = reqwest::header::HeaderValue::try_from(format!("Bearer {}", self.0))
            .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer -"));
        v.set_sensitive(true);
        v
    }

    /// Whether `authorization` (an `Authorization` header's bytes) carries this secret.
    /// The comparison takes the same time wherever the first difference is.
    pub fn verify(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else { return false };
        let mine = self.0.as_bytes();
        given.len() == mine.len() && given.iter().zip(mine).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_exact_secret_and_never_prints_it() {
        let s = ClusterSecret::new(&format!("{}\n", "k".repeat(40))).expect("secret");
        assert!(s.verify(Some(format!("Bearer {}", "k".repeat(40)).as_bytes())));
        for bad in [None, Some(b"".as_slice()), Some(b"Bearer "), Some(b"Basic kkkk")] {
            assert!(!s.verify(bad), "{bad:?}");
        }
        assert!(!s.verify(Some(format!("Bearer {}", "k".repeat(41)).as_bytes())));
        assert!(!s.verify(Some(format!("Bearer {}j", "k".repeat(39)).as_bytes())));
        assert!(!format!("{s:?}").contains("kkk"));
        assert!(s.header_value().is_sensitive());
        assert!(ClusterSecret::new("short").is_err());
        assert!(ClusterSecret::new(&format!("{} x", "k".repeat(40))).is_err(), "inner space");
    }
}
