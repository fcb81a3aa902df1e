//! Stage "caller": who the query runs for, carried into the database so it cannot be widened.
//!
//! The caller's id travels in the transaction-local setting `rowgate.caller` as
//! `<hex of the id>.<hex of sha256(key ‖ hex of the id)>`. The permission views read it through
//! `rowgate.caller_id()`, a SECURITY DEFINER function that recomputes the digest with the key
//! kept in `rowgate_private.identity_key`, which the serving role cannot read. So even a query
//! that managed to call `set_config` (layer 3 forbids it) cannot become someone else: it
//! cannot compute the digest. The id is hex-encoded so the setting needs no SQL escaping, and a
//! digest over hex text cannot be extended into another valid hex payload (SHA-256 length
//! extension needs non-hex padding bytes), which is why a plain keyed hash is enough here.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The setting that carries the signed caller id.
pub const SETTING: &str = "rowgate.caller";

/// Length of the identity key, in bytes.
pub const KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("the user id is empty")]
    Empty,
    #[error("the user id is longer than 256 bytes")]
    TooLong,
    #[error("the user id contains a control character")]
    ControlCharacter,
    #[error("cannot read the identity key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the identity key file {path} must hold {KEY_BYTES} bytes as hex")]
    BadKey { path: String },
}

/// A key that signs caller ids. Held by the gateway and, in the database, only by the views'
/// owner.
#[derive(Clone)]
pub struct IdentityKey(pub [u8; KEY_BYTES]);

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(..)")
    }
}

impl IdentityKey {
    pub fn generate() -> Result<IdentityKey, getrandom::Error> {
        let mut key = [0u8; KEY_BYTES];
        getrandom::fill(&mut key)?;
        Ok(IdentityKey(key))
    }

    pub fn from_hex(text: &str) -> Option<IdentityKey> {
        let bytes = hex::decode(text.trim()).ok()?;
        <[u8; KEY_BYTES]>::try_from(bytes).ok().map(IdentityKey)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn read(path: &Path) -> Result<IdentityKey, CallerError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CallerError::KeyFile {
            path: shown.clone(),
            source,
        })?;
        IdentityKey::from_hex(&text).ok_or(CallerError::BadKey { path: shown })
    }

    /// The value of [`SETTING`] for `user_id`.
    pub fn sign(&self, user_id: &str) -> String {
        let payload = hex::encode(user_id.as_bytes());
        let mut hasher = Sha256::new();
        hasher.update(self.0);
        hasher.update(payload.as_bytes());
        format!("{payload}.{}", hex::encode(hasher.finalize()))
    }
}

/// Checks a user id given by the application before it goes anywhere near the database.
pub fn validate_user_id(user_id: &str) -> Result<(), CallerError> {
    if user_id.is_empty() {
        return Err(CallerError::Empty);
    }
    if user_id.len() > 256 {
        return Err(CallerError::TooLong);
    }
    if user_id.chars().any(char::is_control) {
        return Err(CallerError::ControlCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_payload_and_digest() {
        let key = IdentityKey([7; KEY_BYTES]);
        let signed = key.sign("bob");
        let (payload, digest) = signed.split_once('.').unwrap();
        assert_eq!(payload, "626f62");
        assert_eq!(digest.len(), 64);
        assert_ne!(key.sign("bob"), IdentityKey([8; KEY_BYTES]).sign("bob"));
        assert!(signed.chars().all(|c| c.is_ascii_hexdigit() || c == '.'));
    }

    #[test]
    fn user_ids_are_checked() {
        assert!(validate_user_id("").is_err());
        assert!(validate_user_id("a\nb").is_err());
        assert!(validate_user_id(&"x".repeat(257)).is_err());
        assert!(validate_user_id("anne@example.com").is_ok());
    }
}
