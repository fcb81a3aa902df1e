//! Stage "auth": is the HTTP caller an application we trust to name the user?
//!
//! Keys are compared in constant time over their SHA-256 digests, so neither a key's content
//! nor its length leaks through timing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::refusal::{ErrorCode, Refusal};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing API key")]
    Missing,
    #[error("the Authorization header holds no `Bearer ` before the key")]
    NotBearer,
    #[error("wrong API key")]
    Wrong,
}

impl Refusal for AuthError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Unauthorized
    }

    fn hint(&self) -> String {
        "Send the header `Authorization: Bearer <key>` with a key from ROWGATE_API_KEYS.".into()
    }
}

#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.digests.len())
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl ApiKeys {
    /// Keys from a comma-separated list (ROWGATE_API_KEYS); blanks are ignored.
    pub fn parse(list: &str) -> ApiKeys {
        ApiKeys {
            digests: list
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(digest)
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks an `Authorization` header value. With no keys configured, everyone passes
    /// (the server only allows that on loopback).
    pub fn check(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        if self.digests.is_empty() {
            return Ok(());
        }
        let presented = authorization
            .ok_or(AuthError::Missing)?
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or(AuthError::NotBearer)?;
        let presented = digest(presented);
        // Look at every key, so the time taken does not say which one matched.
        let matched = self
            .digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, key| {
                acc | key.ct_eq(&presented)
            });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        let keys = ApiKeys::parse("alpha, beta,,");
        assert_eq!(keys.check(Some("Bearer beta")), Ok(()));
        assert_eq!(keys.check(Some("Bearer gamma")), Err(AuthError::Wrong));
        assert_eq!(keys.check(Some("beta")), Err(AuthError::NotBearer));
        assert_eq!(keys.check(None), Err(AuthError::Missing));
        assert_eq!(ApiKeys::parse("").check(None), Ok(()));
    }
}
