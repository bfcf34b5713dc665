//! Integration credentials: the `clientToken:clientSecret` pairs with which a bank's back end calls
//! the API (HTTP Basic), made, listed, removed and checked here.
//!
//! A secret is 32 random bytes shown once as unpadded URL-safe Base64 (43 characters); the store keeps
//! only `SHA-256(UTF-8 of that text)` ([`SecretHash`]). A presented secret is hashed the same way and
//! compared in constant time (`subtle`); an unknown client token is compared against a dummy hash so
//! that it costs the same. A random 256-bit secret needs no slow password hash.

use std::sync::Arc;

use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::ServiceError;
use crate::model::Timestamp;
use crate::store::{IntegrationCredential, SecretHash, Store, StoreError};

/// Bytes of randomness in a client secret.
pub(super) const SECRET_BYTES: usize = 32;
/// Longest credential name, in bytes.
const MAX_NAME_LEN: usize = 255;

/// A credential just made: the secret is shown once and never stored.
#[derive(Debug)]
pub struct NewCredential {
    /// The client token (a random UUID v4), the user name of HTTP Basic.
    pub client_token: String,
    /// Who uses it.
    pub name: String,
    /// The secret, the password of HTTP Basic; only its hash is stored.
    pub client_secret: SecretString,
}

/// The integration-credential use cases, over the store alone (no HSM is needed to manage them).
#[derive(Clone)]
pub struct Credentials {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl Credentials {
    /// The use cases over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Whether `client_token` names a stored credential whose secret is `client_secret`.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store cannot be read.
    pub fn authenticate(
        &self,
        client_token: &str,
        client_secret: &SecretString,
    ) -> Result<bool, ServiceError> {
        let presented = hash_secret(client_secret);
        let stored = self.store.credential(client_token)?;
        let (expected, known) = match &stored {
            Some(c) => (c.secret_hash.0.as_slice(), true),
            None => (&[0u8; 32][..], false),
        };
        let equal: bool = presented.0.as_slice().ct_eq(expected).into();
        Ok(equal && known)
    }

    /// Stores a new credential named `name` (its secret hashed) and returns the secret once.
    ///
    /// # Errors
    /// [`ServiceError::InvalidRequest`] for a blank, over-long or control-character name;
    /// [`ServiceError::Internal`] when the store fails.
    pub fn create(&self, name: &str, now: Timestamp) -> Result<NewCredential, ServiceError> {
        if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control)
        {
            return Err(ServiceError::invalid(format!(
                "name must be 1..={MAX_NAME_LEN} bytes without control characters"
            )));
        }
        let (credential, secret) = new_credential(name, now);
        self.store.put_credential(&credential)?;
        Ok(NewCredential {
            client_token: credential.client_token,
            name: credential.name,
            client_secret: secret,
        })
    }

    /// Every credential (token, name, creation time; the hash stays inside), by client token.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store cannot be read.
    pub fn list(&self) -> Result<Vec<IntegrationCredential>, ServiceError> {
        Ok(self.store.credentials()?)
    }

    /// Deletes the credential with this client token; `Ok(false)` when there is none.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store fails.
    pub fn remove(&self, client_token: &str) -> Result<bool, ServiceError> {
        match self.store.remove_credential(client_token) {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// `SHA-256(UTF-8 of the secret text)`.
fn hash_secret(secret: &SecretString) -> SecretHash {
    SecretHash(Sha256::digest(secret.expose_secret().as_bytes()).to_vec())
}

/// A new credential named `name`: a random UUID v4 client token and a fresh secret. The returned
/// record holds only the secret's hash; the secret itself is returned once, to be shown once.
fn new_credential(name: &str, now: Timestamp) -> (IntegrationCredential, SecretString) {
    let mut bytes = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let secret =
        SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()));
    let credential = IntegrationCredential {
        client_token: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        secret_hash: hash_secret(&secret),
        created_at: now,
    };
    (credential, secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_credentials_are_unique_and_hash_their_secret() {
        let now = Timestamp::from_unix_millis(0);
        let (a, sa) = new_credential("a", now);
        let (b, sb) = new_credential("b", now);
        assert_ne!(a.client_token, b.client_token);
        assert_ne!(sa.expose_secret(), sb.expose_secret());
        assert_eq!(sa.expose_secret().len(), 43);
        assert_eq!(a.secret_hash, hash_secret(&sa));
        assert_ne!(a.secret_hash.0, sa.expose_secret().as_bytes());
    }
}
