//! Integration credentials: the `clientToken:clientSecret` pairs with which a bank's back end calls
//! the API (HTTP Basic), made, listed, removed and checked here. Each has an id (named in audit
//! records and by `integration/remove`) and a scope ([`CredentialScope`]); making and removing one
//! is audited with the acting caller.
//!
//! A secret is 32 random bytes shown once as unpadded URL-safe Base64 (43 characters); the store keeps
//! only `SHA-256(UTF-8 of that text)` ([`SecretHash`]). A presented secret is hashed the same way and
//! compared in constant time (`subtle`); an unknown client token is compared against a dummy hash so
//! that it costs the same. A random 256-bit secret needs no slow password hash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::ServiceError;
use super::caller::Caller;
use crate::model::{CredentialScope, Timestamp};
use crate::store::{
    AuditDraft, AuditOperation, AuditOutcome, IntegrationCredential, SecretHash, Store, StoreError,
};

/// Bytes of randomness in a client secret.
pub(super) const SECRET_BYTES: usize = 32;
/// Longest credential name, in bytes.
const MAX_NAME_LEN: usize = 255;

/// A credential just made: the secret is shown once and never stored.
#[derive(Debug)]
pub struct NewCredential {
    /// The credential's id.
    pub id: String,
    /// What it may do.
    pub scope: CredentialScope,
    /// The client token (a random UUID v4), the user name of HTTP Basic.
    pub client_token: String,
    /// Who uses it.
    pub name: String,
    /// The secret, the password of HTTP Basic; only its hash is stored.
    pub client_secret: SecretString,
}

/// A stored credential as listed: everything but the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialInfo {
    /// The credential's id.
    pub id: String,
    /// Who uses it.
    pub name: String,
    /// The client token (HTTP Basic user name).
    pub client_token: String,
    /// What it may do.
    pub scope: CredentialScope,
    /// When it was made.
    pub created_at: Timestamp,
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

    /// Stores a new `ADMIN` credential named `name` (its secret hashed) for a local command and
    /// returns the secret once.
    ///
    /// # Errors
    /// As [`Self::create_scoped`].
    pub fn create(&self, name: &str, now: Timestamp) -> Result<NewCredential, ServiceError> {
        self.create_scoped(&Caller::local(), name, CredentialScope::Admin, now)
    }

    /// Stores a new credential named `name` with `scope` (its secret hashed), audited with the
    /// current caller, and returns the secret once. Needs an `ADMIN` caller.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a caller without the `ADMIN` role;
    /// [`ServiceError::InvalidRequest`] for a blank, over-long or control-character name or an
    /// `APPLICATION` scope without applications; [`ServiceError::Internal`] when the store fails.
    pub fn create_scoped(
        &self,
        caller: &Caller,
        name: &str,
        scope: CredentialScope,
        now: Timestamp,
    ) -> Result<NewCredential, ServiceError> {
        require_admin(caller)?;
        if !valid_name(name) {
            return Err(ServiceError::invalid(format!(
                "name must be 1..={MAX_NAME_LEN} bytes without control characters"
            )));
        }
        if let CredentialScope::Applications {
            application_ids, ..
        } = &scope
        {
            if application_ids.is_empty() || application_ids.iter().any(|id| !valid_name(id)) {
                return Err(ServiceError::invalid(
                    "applications must list 1 or more application ids for role APPLICATION",
                ));
            }
        }
        let (credential, secret) = new_credential(name, scope, now);
        let audit = draft(
            caller,
            now,
            AuditOperation::IntegrationCreate,
            AuditOutcome::Created,
            &credential.id,
        );
        self.store.put_credential(&credential, Some(audit))?;
        Ok(NewCredential {
            id: credential.id,
            scope: credential.scope,
            client_token: credential.client_token,
            name: credential.name,
            client_secret: secret,
        })
    }

    /// Every credential (id, token, name, scope, creation time; the hash stays inside), by client
    /// token. Needs an `ADMIN` caller.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a caller without the `ADMIN` role;
    /// [`ServiceError::Internal`] when the store cannot be read.
    pub fn list(&self, caller: &Caller) -> Result<Vec<CredentialInfo>, ServiceError> {
        require_admin(caller)?;
        Ok(self
            .store
            .credentials()?
            .into_iter()
            .map(|c| CredentialInfo {
                id: c.id,
                name: c.name,
                client_token: c.client_token,
                scope: c.scope,
                created_at: c.created_at,
            })
            .collect())
    }

    /// Deletes the credential with this client token; `Ok(false)` when there is none.
    ///
    /// # Errors
    /// As [`Self::remove_by`].
    pub fn remove(&self, caller: &Caller, client_token: &str) -> Result<bool, ServiceError> {
        self.remove_by(caller, |c| c.client_token == client_token)
    }

    /// Deletes the credential with this id; `Ok(false)` when there is none.
    ///
    /// # Errors
    /// As [`Self::remove_by`].
    pub fn remove_id(&self, caller: &Caller, id: &str) -> Result<bool, ServiceError> {
        self.remove_by(caller, |c| c.id == id)
    }

    /// Deletes the first credential matching `which`, audited with the current caller. Needs an
    /// `ADMIN` caller.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a caller without the `ADMIN` role;
    /// [`ServiceError::Internal`] when the store fails.
    fn remove_by(
        &self,
        caller: &Caller,
        which: impl Fn(&IntegrationCredential) -> bool,
    ) -> Result<bool, ServiceError> {
        require_admin(caller)?;
        let Some(found) = self.store.credentials()?.into_iter().find(|c| which(c)) else {
            return Ok(false);
        };
        let audit = draft(
            caller,
            Timestamp::now(),
            AuditOperation::IntegrationRemove,
            AuditOutcome::Removed,
            &found.id,
        );
        match self
            .store
            .remove_credential(&found.client_token, Some(audit))
        {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// The audit record of a credential change by `caller` to credential `id` (written in the same
/// atomic write as the change).
fn draft(
    caller: &Caller,
    now: Timestamp,
    operation: AuditOperation,
    outcome: AuditOutcome,
    id: &str,
) -> AuditDraft {
    let mut draft = AuditDraft::new(now, operation, outcome);
    draft.actor = Some(caller.id().to_owned());
    draft.subject = Some(id.to_owned());
    draft
}

/// How long an instance keeps answering with a credential it read, before it reads it again. The
/// promise is that a removed credential is refused by every instance within one second; half of
/// that leaves the rest for the removal's own commit and a request already past authentication.
pub(super) const RECENT_CREDENTIAL_TTL: Duration = Duration::from_millis(500);

/// Credentials this instance read in the last [`RECENT_CREDENTIAL_TTL`], by client token, so that a
/// busy integration does not cost a store read (with PostgreSQL, a round trip) on every request.
/// Only stored credentials are kept (an unknown token is read again each time, so a credential made
/// on another instance works at once), hence no more entries than there are credentials. The
/// instance that removes a credential forgets them all ([`Self::clear`]), and a read that began
/// before that is not kept ([`Self::begin`]), so this instance refuses a credential it removed from
/// the next request on. The secret's hash is all it holds of a secret, as the store does.
#[derive(Debug, Default)]
pub(super) struct RecentCredentials(Mutex<Recent>);

#[derive(Debug, Default)]
struct Recent {
    /// Bumped by every [`RecentCredentials::clear`].
    generation: u64,
    by_token: HashMap<String, (IntegrationCredential, Instant)>,
}

impl RecentCredentials {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The credential of `client_token` if it was read less than the TTL before `now`.
    pub(super) fn get(&self, client_token: &str, now: Instant) -> Option<IntegrationCredential> {
        self.lock()
            .by_token
            .get(client_token)
            .filter(|(_, read_at)| now.saturating_duration_since(*read_at) < RECENT_CREDENTIAL_TTL)
            .map(|(credential, _)| credential.clone())
    }

    /// Call before reading a credential from the store; give the answer to [`Self::put`].
    pub(super) fn begin(&self) -> u64 {
        self.lock().generation
    }

    /// Remembers `credential`, read at `read_at` by a read that began at `began` ([`Self::begin`]),
    /// unless the credentials were forgotten since.
    pub(super) fn put(&self, began: u64, credential: &IntegrationCredential, read_at: Instant) {
        let mut recent = self.lock();
        if recent.generation == began {
            recent.by_token.insert(
                credential.client_token.clone(),
                (credential.clone(), read_at),
            );
        }
    }

    /// Forgets every credential, and every read under way (after this instance removed one).
    pub(super) fn clear(&self) {
        let mut recent = self.lock();
        recent.generation = recent.generation.wrapping_add(1);
        recent.by_token.clear();
    }
}

/// The caller that the stored credential `stored` (the one its client token names, if any) makes of
/// a request presenting `client_secret`: `None` unless the secret's hash matches, compared in
/// constant time (against a dummy hash when nothing is stored, so that an unknown token costs the
/// same).
pub(super) fn caller_from(
    stored: Option<IntegrationCredential>,
    client_secret: &SecretString,
) -> Option<Caller> {
    let presented = hash_secret(client_secret);
    let expected = stored
        .as_ref()
        .map_or(&[0u8; 32][..], |c| c.secret_hash.0.as_slice());
    let equal: bool = presented.0.as_slice().ct_eq(expected).into();
    stored
        .filter(|_| equal)
        .map(|c| Caller::credential(c.id, c.scope))
}

/// [`ServiceError::Forbidden`] unless `caller` has the `ADMIN` role.
fn require_admin(caller: &Caller) -> Result<(), ServiceError> {
    if caller.scope().is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden)
    }
}

fn valid_name(name: &str) -> bool {
    !name.trim().is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
}

/// `SHA-256(UTF-8 of the secret text)`.
fn hash_secret(secret: &SecretString) -> SecretHash {
    SecretHash(Sha256::digest(secret.expose_secret().as_bytes()).to_vec())
}

/// A new credential named `name`: a random UUID v4 client token and a fresh secret. The returned
/// record holds only the secret's hash; the secret itself is returned once, to be shown once.
fn new_credential(
    name: &str,
    scope: CredentialScope,
    now: Timestamp,
) -> (IntegrationCredential, SecretString) {
    let mut bytes = zeroize::Zeroizing::new([0u8; SECRET_BYTES]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let secret =
        SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()));
    let credential = IntegrationCredential {
        id: uuid::Uuid::new_v4().to_string(),
        scope,
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
        let (a, sa) = new_credential("a", CredentialScope::Admin, now);
        let (b, sb) = new_credential("b", CredentialScope::Admin, now);
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, a.client_token);
        assert_ne!(a.client_token, b.client_token);
        assert_ne!(sa.expose_secret(), sb.expose_secret());
        assert_eq!(sa.expose_secret().len(), 43);
        assert_eq!(a.secret_hash, hash_secret(&sa));
        assert_ne!(a.secret_hash.0, sa.expose_secret().as_bytes());
    }

    /// A new `ADMIN` credential and its secret.
    fn admin_credential() -> (IntegrationCredential, SecretString) {
        new_credential(
            "integration",
            CredentialScope::Admin,
            Timestamp::from_unix_millis(0),
        )
    }

    #[test]
    fn a_recent_credential_is_kept_for_less_than_the_ttl_and_forgotten_on_clear() {
        let (credential, _) = admin_credential();
        let token = credential.client_token.clone();
        let read_at = Instant::now();
        let recent = RecentCredentials::default();
        assert_eq!(recent.get(&token, read_at), None, "nothing read yet");
        let began = recent.begin();
        recent.put(began, &credential, read_at);
        let just_before = read_at + RECENT_CREDENTIAL_TTL - Duration::from_millis(1);
        assert_eq!(recent.get(&token, just_before), Some(credential.clone()));
        assert_eq!(recent.get(&token, read_at + RECENT_CREDENTIAL_TTL), None);
        assert_eq!(recent.get("another-token", read_at), None);
        recent.clear();
        assert_eq!(recent.get(&token, read_at), None, "forgotten");
        // A read that began before the clear (it may have seen the credential before its removal
        // committed) is not kept; one that began after is.
        recent.put(began, &credential, read_at);
        assert_eq!(
            recent.get(&token, read_at),
            None,
            "a read from before the clear"
        );
        recent.put(recent.begin(), &credential, read_at);
        assert_eq!(recent.get(&token, read_at), Some(credential.clone()));
        assert!(
            RECENT_CREDENTIAL_TTL < Duration::from_secs(1),
            "the promise"
        );
    }

    #[test]
    fn only_the_right_secret_makes_a_caller() {
        let (credential, secret) = admin_credential();
        let caller = caller_from(Some(credential.clone()), &secret).expect("a caller");
        assert_eq!(caller.id(), credential.id);
        let wrong = SecretString::from("not-the-secret".to_owned());
        assert_eq!(caller_from(Some(credential), &wrong), None);
        assert_eq!(caller_from(None, &secret), None);
    }
}
