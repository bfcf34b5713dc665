//! The `software-insecure` signer: every key lives in this process's memory (p256, AES-KWP,
//! AES-GCM from RustCrypto), optionally persisted **in plaintext** to a JSON file so that a
//! development service survives restarts.
//!
//! It implements the same contract as the PKCS#11 signer (same trait, same conformance suite) so
//! that unit tests and laptops can run without an HSM. It is never the default: the configuration
//! must say `kind = "software-insecure"`, and every construction logs a warning. Its key report
//! honestly shows every key as not sensitive, which counts as a violation of the keys table.
//!
//! Wrapped keys: `AES-KWP(KEK, 32-byte private scalar)` (RFC 5649). Sealed secrets: the common
//! [`EncryptedSecret`] layout with AES-256-GCM.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use async_trait::async_trait;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::config::SoftwareConfig;
use super::{
    AUDIT_LABEL, DEK_LABEL, GeneratedKeyPair, Inventory, KEK_LABEL, KeyRef, ObjectAttributes,
    OpenError, PlainSecret, SharedSecret, Signer, SignerError, SignerKind, StorageKeyIds,
    TokenDescription, WrappedKeyPair, check_digest, master_label,
};
use crate::model::{DerSignature, EncryptedSecret, KeyId, PublicKey, SEALED_IV_LEN, WrappedKey};

/// What a software key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Purpose {
    Master,
    Kek,
    Dek,
    Audit,
}

enum SoftKey {
    Master(p256::SecretKey),
    Audit(p256::SecretKey),
    Aes(Purpose, Zeroizing<[u8; 32]>),
}

impl SoftKey {
    fn purpose(&self) -> Purpose {
        match self {
            SoftKey::Master(_) => Purpose::Master,
            SoftKey::Audit(_) => Purpose::Audit,
            SoftKey::Aes(p, _) => *p,
        }
    }
}

/// One key in the plaintext key file.
#[derive(Serialize, Deserialize)]
struct FileKey {
    id: KeyId,
    purpose: Purpose,
    /// Hex of the 32 secret bytes (P-256 scalar or AES-256 key).
    secret: String,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    warning: String,
    version: u32,
    keys: Vec<FileKey>,
}

const FILE_WARNING: &str = "INSECURE: offline-signer software-insecure keys in PLAINTEXT. \
                            For tests and development only; never use in production.";

/// The in-process signer. See the module documentation.
pub struct SoftwareSigner {
    keys: Mutex<BTreeMap<KeyId, SoftKey>>,
    key_file: Option<PathBuf>,
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl SoftwareSigner {
    /// An empty in-memory signer. Logs a warning.
    pub fn new_in_memory() -> Self {
        warn_insecure(None);
        SoftwareSigner {
            keys: Mutex::new(BTreeMap::new()),
            key_file: None,
        }
    }

    /// Builds the signer from its settings, loading the key file when it exists. Logs a warning.
    ///
    /// # Errors
    /// [`OpenError::KeyFile`] when the key file cannot be read or parsed.
    pub fn open(cfg: &SoftwareConfig) -> Result<Self, OpenError> {
        warn_insecure(cfg.key_file.as_deref());
        let mut keys = BTreeMap::new();
        if let Some(path) = &cfg.key_file {
            if path.exists() {
                keys = load_file(path)?;
            }
        }
        Ok(SoftwareSigner {
            keys: Mutex::new(keys),
            key_file: cfg.key_file.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<KeyId, SoftKey>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts).
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn insert(&self, id: KeyId, key: SoftKey) -> Result<(), SignerError> {
        let mut keys = self.lock();
        keys.insert(id, key);
        if let Some(path) = &self.key_file {
            save_file(path, &keys)?;
        }
        Ok(())
    }

    fn aes_key(&self, id: &KeyId, purpose: Purpose) -> Result<Zeroizing<[u8; 32]>, SignerError> {
        match self.lock().get(id) {
            Some(SoftKey::Aes(p, k)) if *p == purpose => Ok(k.clone()),
            _ => Err(SignerError::KeyNotFound {
                label: format!("{}#{id}", label_of(purpose)),
            }),
        }
    }

    fn master(&self, id: &KeyId) -> Result<p256::SecretKey, SignerError> {
        match self.lock().get(id) {
            Some(SoftKey::Master(k)) => Ok(k.clone()),
            _ => Err(SignerError::KeyNotFound {
                label: master_label(id),
            }),
        }
    }

    fn audit(&self, id: &KeyId) -> Result<p256::SecretKey, SignerError> {
        match self.lock().get(id) {
            Some(SoftKey::Audit(k)) => Ok(k.clone()),
            _ => Err(SignerError::KeyNotFound {
                label: format!("{AUDIT_LABEL}#{id}"),
            }),
        }
    }

    fn unwrap_key(&self, key: &WrappedKey) -> Result<p256::SecretKey, SignerError> {
        let kek = self.aes_key(key.kek(), Purpose::Kek)?;
        let kw = aes_kw::KekAes256::from(*kek);
        let scalar = Zeroizing::new(
            kw.unwrap_with_padding_vec(key.blob())
                .map_err(|_| SignerError::DecryptFailed)?,
        );
        p256::SecretKey::from_slice(&scalar).map_err(|_| SignerError::Malformed("wrapped key"))
    }

    fn find_storage_key(&self, purpose: Purpose) -> Result<Option<KeyId>, SignerError> {
        let keys = self.lock();
        let found: Vec<KeyId> = keys
            .iter()
            .filter(|(_, k)| k.purpose() == purpose)
            .map(|(id, _)| *id)
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            more => Err(SignerError::AmbiguousKey {
                label: label_of(purpose).to_owned(),
                count: more.len(),
            }),
        }
    }

    fn ensure_one(&self, purpose: Purpose) -> Result<KeyId, SignerError> {
        if let Some(id) = self.find_storage_key(purpose)? {
            return Ok(id);
        }
        let id = KeyId::generate();
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        self.insert(id, SoftKey::Aes(purpose, bytes))?;
        Ok(id)
    }
}

fn warn_insecure(file: Option<&Path>) {
    tracing::warn!(
        key_file = ?file,
        "signer kind software-insecure: keys live in process memory{}; \
         for tests and development only, never in production",
        if file.is_some() { " and in a PLAINTEXT key file" } else { "" }
    );
}

fn label_of(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Master => "offline-signer/master",
        Purpose::Kek => KEK_LABEL,
        Purpose::Dek => DEK_LABEL,
        Purpose::Audit => AUDIT_LABEL,
    }
}

fn load_file(path: &Path) -> Result<BTreeMap<KeyId, SoftKey>, OpenError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        OpenError::Token(SignerError::Internal(format!(
            "reading {}: {}",
            path.display(),
            e.kind()
        )))
    })?);
    let file: KeyFile = serde_json::from_str(&text).map_err(|_| OpenError::KeyFile)?;
    let mut keys = BTreeMap::new();
    for k in file.keys {
        let secret = Zeroizing::new(hex::decode(&k.secret).map_err(|_| OpenError::KeyFile)?);
        let key = match k.purpose {
            Purpose::Master => SoftKey::Master(
                p256::SecretKey::from_slice(&secret).map_err(|_| OpenError::KeyFile)?,
            ),
            Purpose::Audit => SoftKey::Audit(
                p256::SecretKey::from_slice(&secret).map_err(|_| OpenError::KeyFile)?,
            ),
            p => {
                let bytes =
                    <[u8; 32]>::try_from(secret.as_slice()).map_err(|_| OpenError::KeyFile)?;
                SoftKey::Aes(p, Zeroizing::new(bytes))
            }
        };
        keys.insert(k.id, key);
    }
    Ok(keys)
}

fn save_file(path: &Path, keys: &BTreeMap<KeyId, SoftKey>) -> Result<(), SignerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = KeyFile {
        warning: FILE_WARNING.to_owned(),
        version: 1,
        keys: keys
            .iter()
            .map(|(id, k)| FileKey {
                id: *id,
                purpose: k.purpose(),
                secret: match k {
                    SoftKey::Master(s) | SoftKey::Audit(s) => hex::encode(s.to_bytes()),
                    SoftKey::Aes(_, b) => hex::encode(b.as_ref()),
                },
            })
            .collect(),
    };
    let text = Zeroizing::new(
        serde_json::to_string_pretty(&file)
            .map_err(|e| SignerError::Internal(format!("encoding key file: {e}")))?,
    );
    for k in file.keys {
        drop(Zeroizing::new(k.secret));
    }
    let io = |e: std::io::Error| {
        SignerError::Internal(format!("writing {}: {}", path.display(), e.kind()))
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

fn software_attributes(id: &KeyId, label: String, class: &str, key_type: &str) -> ObjectAttributes {
    ObjectAttributes {
        id: id.to_string(),
        label,
        class: class.to_owned(),
        key_type: key_type.to_owned(),
        token: Some(true),
        private: Some(true),
        // Honest: the value sits in process memory (and maybe a plaintext file).
        sensitive: Some(false),
        extractable: Some(false),
        always_sensitive: Some(false),
        never_extractable: Some(false),
        local: Some(true),
        trusted: None,
        wrap_with_trusted: None,
        value_readable: Some(false),
    }
}

#[async_trait]
impl Signer for SoftwareSigner {
    fn kind(&self) -> SignerKind {
        SignerKind::SoftwareInsecure
    }

    async fn health(&self) -> Result<(), SignerError> {
        Ok(())
    }

    async fn generate_master_key(&self) -> Result<GeneratedKeyPair, SignerError> {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let public_key = PublicKey::from_p256(secret.public_key());
        let id = KeyId::generate();
        self.insert(id, SoftKey::Master(secret))?;
        Ok(GeneratedKeyPair { id, public_key })
    }

    async fn ensure_storage_keys(
        &self,
        recorded: Option<StorageKeyIds>,
    ) -> Result<StorageKeyIds, SignerError> {
        match recorded {
            Some(ids) => {
                self.aes_key(&ids.kek, Purpose::Kek)?;
                self.aes_key(&ids.dek, Purpose::Dek)?;
                Ok(ids)
            }
            None => Ok(StorageKeyIds {
                kek: self.ensure_one(Purpose::Kek)?,
                dek: self.ensure_one(Purpose::Dek)?,
            }),
        }
    }

    async fn ensure_audit_key(
        &self,
        recorded: Option<KeyId>,
    ) -> Result<GeneratedKeyPair, SignerError> {
        let id = match recorded {
            Some(id) => id,
            None => match self.find_storage_key(Purpose::Audit)? {
                Some(id) => id,
                None => {
                    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
                    let public_key = PublicKey::from_p256(secret.public_key());
                    let id = KeyId::generate();
                    self.insert(id, SoftKey::Audit(secret))?;
                    return Ok(GeneratedKeyPair { id, public_key });
                }
            },
        };
        let public_key = PublicKey::from_p256(self.audit(&id)?.public_key());
        Ok(GeneratedKeyPair { id, public_key })
    }

    async fn destroy_key(&self, id: &KeyId) -> Result<bool, SignerError> {
        let mut keys = self.lock();
        let destroyed = keys.remove(id).is_some();
        if destroyed {
            if let Some(path) = &self.key_file {
                save_file(path, &keys)?;
            }
        }
        Ok(destroyed)
    }

    async fn generate_wrapped_key_pair(&self, kek: &KeyId) -> Result<WrappedKeyPair, SignerError> {
        let kek_bytes = self.aes_key(kek, Purpose::Kek)?;
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let scalar = Zeroizing::new(secret.to_bytes());
        let blob = aes_kw::KekAes256::from(*kek_bytes)
            .wrap_with_padding_vec(&scalar[..])
            .map_err(|_| SignerError::Internal("AES key wrap failed".into()))?;
        Ok(WrappedKeyPair {
            wrapped: WrappedKey::new(*kek, blob),
            public_key: PublicKey::from_p256(secret.public_key()),
        })
    }

    async fn sign_digest(
        &self,
        key: KeyRef<'_>,
        digest: &[u8],
    ) -> Result<DerSignature, SignerError> {
        let digest = check_digest(digest)?;
        let secret = match key {
            KeyRef::Token(id) => self.master(id)?,
            KeyRef::Wrapped(w) => self.unwrap_key(w)?,
            KeyRef::Audit(id) => self.audit(id)?,
        };
        let signing = p256::ecdsa::SigningKey::from(&secret);
        let sig: p256::ecdsa::Signature = signing
            .sign_prehash(&digest)
            .map_err(|_| SignerError::Internal("ECDSA signing failed".into()))?;
        DerSignature::from_raw(&sig.to_bytes())
            .map_err(|_| SignerError::Internal("ECDSA signing gave a malformed signature".into()))
    }

    async fn ecdh(
        &self,
        key: &WrappedKey,
        peer_public: &PublicKey,
    ) -> Result<SharedSecret, SignerError> {
        let peer = peer_public.as_p256();
        let secret = self.unwrap_key(key)?;
        let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
        let mut x = Zeroizing::new([0u8; 32]);
        x.copy_from_slice(shared.raw_secret_bytes());
        Ok(SharedSecret::new(x))
    }

    async fn encrypt_secret(
        &self,
        dek: &KeyId,
        associated_data: &[u8],
        plaintext: &[u8],
    ) -> Result<EncryptedSecret, SignerError> {
        let key = self.aes_key(dek, Purpose::Dek)?;
        let cipher = aes_gcm::Aes256Gcm::new(key.as_ref().into());
        let mut iv = [0u8; SEALED_IV_LEN];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let ct = cipher
            .encrypt(
                (&iv).into(),
                Payload {
                    msg: plaintext,
                    aad: associated_data,
                },
            )
            .map_err(|_| SignerError::Internal("AES-GCM encryption failed".into()))?;
        Ok(EncryptedSecret::from_parts(&iv, &ct))
    }

    async fn decrypt_secret(
        &self,
        dek: &KeyId,
        associated_data: &[u8],
        sealed: &EncryptedSecret,
    ) -> Result<PlainSecret, SignerError> {
        let key = self.aes_key(dek, Purpose::Dek)?;
        let cipher = aes_gcm::Aes256Gcm::new(key.as_ref().into());
        let iv = sealed.iv();
        let pt = cipher
            .decrypt(
                (&iv).into(),
                Payload {
                    msg: sealed.ciphertext_and_tag(),
                    aad: associated_data,
                },
            )
            .map_err(|_| SignerError::DecryptFailed)?;
        Ok(PlainSecret::new(Zeroizing::new(pt)))
    }

    async fn public_key(&self, id: &KeyId) -> Result<PublicKey, SignerError> {
        Ok(PublicKey::from_p256(self.master(id)?.public_key()))
    }

    async fn unwrapped_key_attributes(
        &self,
        key: &WrappedKey,
    ) -> Result<ObjectAttributes, SignerError> {
        let secret = self.unwrap_key(key)?;
        drop(secret);
        let mut attrs = software_attributes(key.kek(), "(unwrapped)".into(), "privateKey", "EC");
        attrs.id = String::new();
        attrs.token = Some(false);
        attrs.local = Some(false);
        Ok(attrs)
    }

    async fn inventory(&self) -> Result<Inventory, SignerError> {
        let keys = self.lock();
        let mut objects = Vec::new();
        for (id, key) in keys.iter() {
            match key {
                SoftKey::Master(_) | SoftKey::Audit(_) => {
                    let label = match key {
                        SoftKey::Audit(_) => AUDIT_LABEL.to_owned(),
                        _ => master_label(id),
                    };
                    objects.push(software_attributes(id, label.clone(), "privateKey", "EC"));
                    let mut public = software_attributes(id, label, "publicKey", "EC");
                    public.sensitive = None;
                    public.extractable = None;
                    public.always_sensitive = None;
                    public.never_extractable = None;
                    public.private = Some(false);
                    public.value_readable = None;
                    objects.push(public);
                }
                SoftKey::Aes(p, _) => objects.push(software_attributes(
                    id,
                    label_of(*p).into(),
                    "secretKey",
                    "AES",
                )),
            }
        }
        Ok(Inventory {
            token: TokenDescription {
                label: "software-insecure".into(),
                serial: String::new(),
                manufacturer: "offline-signer".into(),
                model: "in-process keys (INSECURE)".into(),
            },
            objects,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn key_file_survives_a_restart_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = SoftwareConfig {
            key_file: Some(dir.path().join("keys.json")),
        };
        let first = SoftwareSigner::open(&cfg).unwrap();
        let master = first.generate_master_key().await.unwrap();
        let ids = first.ensure_storage_keys(None).await.unwrap();
        let sealed = first
            .encrypt_secret(&ids.dek, b"ad", b"factor")
            .await
            .unwrap();
        drop(first);
        let mode = std::fs::metadata(dir.path().join("keys.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(text.contains("INSECURE"));

        let second = SoftwareSigner::open(&cfg).unwrap();
        assert_eq!(
            second.public_key(&master.id).await.unwrap(),
            master.public_key
        );
        assert_eq!(second.ensure_storage_keys(None).await.unwrap(), ids);
        let plain = second
            .decrypt_secret(&ids.dek, b"ad", &sealed)
            .await
            .unwrap();
        assert_eq!(plain.expose(), b"factor");
    }

    #[tokio::test]
    async fn recorded_ids_must_exist() {
        let s = SoftwareSigner::new_in_memory();
        let bogus = StorageKeyIds {
            kek: KeyId::generate(),
            dek: KeyId::generate(),
        };
        assert!(matches!(
            s.ensure_storage_keys(Some(bogus)).await,
            Err(SignerError::KeyNotFound { .. })
        ));
    }
}
