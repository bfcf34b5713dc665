//! The token's persistent state and its file (`--state FILE`).
//!
//! A [`TokenState`] holds what a phone keeps for one activation to make offline codes
//! (`spec/powerauth-offline.md` §9): the three factor keys Kp, Kk, Kb, the activation's server public
//! key (checks personalized QR codes), the application's master public key (checks non-personalized
//! ones), the hash-based counter `CTR_DATA` and how many codes were made, the ids and the server URL.
//! The device private key is **not** kept: offline signing needs only the factor keys derived from it
//! at activation, so the simulator drops it as soon as they exist. Tokens activated with an
//! activation code (protocol 3.3) also keep `KEY_TRANSPORT`, which decrypts the status blob
//! (`spec/powerauth-activation.md` §6), and the protocol version they activated with. Both fields
//! are optional in the file, so state files written before they existed still load.
//!
//! The file is JSON, created with mode 0600 and always replaced atomically: the new content goes to a
//! temporary file in the same folder (mode 0600, flushed with `fsync`), which is then renamed over the
//! old one and the folder is synced. A crash leaves either the old file or the new one, never half of
//! one. A real mobile token keeps this material in the phone's secure storage (Keychain, Android
//! Keystore), with Kk encrypted under a key derived from the PIN; this file is a test double.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize as _, Zeroizing};

use crate::crypto::ecies::ProtocolVersion;
use crate::crypto::{CounterData, FactorKeys, PublicKey, SymmetricKey};

/// The server private key of the worked example of `powerauth-offline.md` §11 (Java `BigInteger`
/// bytes, Base64): it signs the example's QR payloads. Test material only.
pub const WORKED_SERVER_PRIVATE_KEY: &str = "AL0qVUrBte9i+xm0TQBkPT9XAxEiQae3tMwMUMEUGlYc";

/// The format version written into every state file.
pub const STATE_FORMAT: u32 = 1;

/// Why a state file could not be read or written. Messages name the file, never its secrets.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The file could not be read.
    #[error("cannot read token state {path}: {source}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file could not be written or renamed into place.
    #[error("cannot write token state {path}: {source}")]
    Write {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a token state of this version (the JSON reason only, never a value).
    #[error("token state {path} is not valid: {reason}")]
    Invalid {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `activate` refuses to replace an existing state file (it holds another activation's keys).
    #[error("token state {0} already exists; remove it first to activate a new token")]
    AlreadyExists(PathBuf),
}

/// Everything the simulated phone keeps for one activation. `Debug` redacts the factor keys.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenState {
    /// Base URL of the service, e.g. `http://127.0.0.1:8080`.
    pub server_url: String,
    /// The application this token belongs to.
    pub application_id: String,
    /// The user the activation was registered for.
    pub user_id: String,
    /// The activation id (UUID).
    pub activation_id: String,
    /// The device public key (for the fingerprint).
    pub device_public_key: PublicKey,
    /// `KEY_SERVER_PUBLIC`: checks QR codes with key indicator `1`.
    pub server_public_key: PublicKey,
    /// `KEY_SERVER_MASTER_PUBLIC`: checks QR codes with key indicator `0`.
    pub master_public_key: PublicKey,
    /// Kp, Kk, Kb.
    pub factor_keys: FactorKeys,
    /// The counter data the next code is made with.
    pub counter_data: CounterData,
    /// How many codes this token has made since activation.
    pub counter: u64,
    /// `KEY_TRANSPORT` (`KDF(KEY_MASTER_SECRET, 1000)`): decrypts the status blob. `None` in state
    /// files written before it was kept.
    pub transport_key: Option<SymmetricKey>,
    /// The protocol version of the activation (`3.3` for activation by code); `None` for the
    /// `activation/register` test path and for older state files.
    pub protocol_version: Option<ProtocolVersion>,
}

impl fmt::Debug for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenState")
            .field("server_url", &self.server_url)
            .field("application_id", &self.application_id)
            .field("activation_id", &self.activation_id)
            .field("factor_keys", &"REDACTED")
            .field("counter_data", &self.counter_data)
            .field("counter", &self.counter)
            .field("protocol_version", &self.protocol_version)
            .finish_non_exhaustive()
    }
}

/// The JSON shape of the file. Key fields hold Base64 and are wiped after use.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StateFile {
    format: u32,
    server_url: String,
    application_id: String,
    user_id: String,
    activation_id: String,
    device_public_key: String,
    server_public_key: String,
    master_public_key: String,
    possession_key: String,
    knowledge_key: String,
    biometry_key: String,
    ctr_data: String,
    counter: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transport_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protocol_version: Option<String>,
}

impl Drop for StateFile {
    fn drop(&mut self) {
        self.possession_key.zeroize();
        self.knowledge_key.zeroize();
        self.biometry_key.zeroize();
        if let Some(key) = &mut self.transport_key {
            key.zeroize();
        }
    }
}

impl TokenState {
    /// The token of the worked example of `powerauth-offline.md` §11 (its factor keys, counter data
    /// and activation id; the server's key stands in for the master key too), at counter 0, bound to
    /// `server_url`. Test material, published so that tests and examples share one copy of it.
    ///
    /// # Panics
    /// Never: the constants are valid keys (checked by the tests).
    pub fn worked_example(server_url: &str) -> TokenState {
        let server = crate::crypto::PrivateKey::from_base64(WORKED_SERVER_PRIVATE_KEY)
            .expect("the worked example's server key is a valid scalar");
        let key = |b64: &str| {
            SymmetricKey::from_base64(b64).expect("the worked example's factor keys are 16 bytes")
        };
        TokenState {
            server_url: server_url.to_owned(),
            application_id: "demo".into(),
            user_id: "alice".into(),
            activation_id: "c564e700-7e86-4a87-b6c8-a5a0cc89683f".into(),
            device_public_key: PublicKey::from_base64(
                "BH/XZpylbWzTHS9LWR7ckCfHPPOG0MrsP9C2hmXXgQYpzmKSP4w0SpZz5227RKpEGkIq3Jew6p3KxrbUGDTC+nU=",
            )
            .expect("the worked example's device key is a P-256 point"),
            server_public_key: server.public_key(),
            master_public_key: server.public_key(),
            factor_keys: FactorKeys::new(
                key("UUOQH89Hoa/Nw7ew5rGTPw=="),
                key("hjHWTy3HA3nQdDcdnJbRMw=="),
                key("S9fNvGUhUafp18upFWzCoA=="),
            ),
            counter_data: CounterData::from_base64("AAECAwQFBgcICQoLDA0ODw==")
                .expect("the worked example's counter data is 16 bytes"),
            counter: 0,
            transport_key: None,
            protocol_version: None,
        }
    }

    /// Reads and validates a state file.
    pub fn load(path: &Path) -> Result<Self, StateFileError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| StateFileError::Read {
            path: path.to_owned(),
            source,
        })?);
        Self::from_json(&bytes, path)
    }

    /// Parses and validates the JSON of a state (a state file, or one line of a file holding many
    /// states, e.g. the benchmark's devices); `path` names it in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Self, StateFileError> {
        let invalid = |reason: String| StateFileError::Invalid {
            path: path.to_owned(),
            reason,
        };
        // Only the kind of error and its position: serde_json's message can quote a value.
        let file: StateFile = serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!(
                "JSON {:?} error at line {}, column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if file.format != STATE_FORMAT {
            return Err(invalid(format!(
                "format {} (this build reads {STATE_FORMAT})",
                file.format
            )));
        }
        let key = |name: &str, text: &str| {
            PublicKey::from_base64(text).map_err(|_| invalid(format!("{name} is not a P-256 key")))
        };
        let secret = |name: &str, text: &str| {
            SymmetricKey::from_base64(text)
                .map_err(|_| invalid(format!("{name} is not Base64 of 16 bytes")))
        };
        Ok(Self {
            device_public_key: key("devicePublicKey", &file.device_public_key)?,
            server_public_key: key("serverPublicKey", &file.server_public_key)?,
            master_public_key: key("masterPublicKey", &file.master_public_key)?,
            factor_keys: FactorKeys::new(
                secret("possessionKey", &file.possession_key)?,
                secret("knowledgeKey", &file.knowledge_key)?,
                secret("biometryKey", &file.biometry_key)?,
            ),
            counter_data: CounterData::from_base64(&file.ctr_data)
                .map_err(|_| invalid("ctrData is not Base64 of 16 bytes".to_owned()))?,
            counter: file.counter,
            transport_key: file
                .transport_key
                .as_deref()
                .map(|text| secret("transportKey", text))
                .transpose()?,
            protocol_version: file
                .protocol_version
                .as_deref()
                .map(|text| {
                    ProtocolVersion::parse(text)
                        .map_err(|_| invalid("protocolVersion is not 3.0 to 3.3".to_owned()))
                })
                .transpose()?,
            server_url: file.server_url.clone(),
            application_id: file.application_id.clone(),
            user_id: file.user_id.clone(),
            activation_id: file.activation_id.clone(),
        })
    }

    /// Writes the state atomically with mode 0600 (see the module documentation).
    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        let mut json = Zeroizing::new(
            serde_json::to_vec_pretty(&self.file())
                .expect("a struct of strings and numbers serializes"),
        );
        json.push(b'\n');
        write_atomically(path, &json).map_err(|source| StateFileError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The state as one line of compact JSON (the content of a state file without indentation),
    /// ending in a line feed; [`TokenState::from_json`] reads it back.
    pub fn to_json_line(&self) -> Zeroizing<Vec<u8>> {
        let mut json = Zeroizing::new(
            serde_json::to_vec(&self.file()).expect("a struct of strings and numbers serializes"),
        );
        json.push(b'\n');
        json
    }

    fn file(&self) -> StateFile {
        StateFile {
            format: STATE_FORMAT,
            server_url: self.server_url.clone(),
            application_id: self.application_id.clone(),
            user_id: self.user_id.clone(),
            activation_id: self.activation_id.clone(),
            device_public_key: self.device_public_key.to_base64(),
            server_public_key: self.server_public_key.to_base64(),
            master_public_key: self.master_public_key.to_base64(),
            possession_key: self.factor_keys.possession.to_base64().to_string(),
            knowledge_key: self.factor_keys.knowledge.to_base64().to_string(),
            biometry_key: self.factor_keys.biometry.to_base64().to_string(),
            ctr_data: self.counter_data.to_base64(),
            counter: self.counter,
            transport_key: self
                .transport_key
                .as_ref()
                .map(|key| key.to_base64().to_string()),
            protocol_version: self.protocol_version.map(|v| v.as_str().to_owned()),
        }
    }

    /// Writes a brand-new state file; refuses when `path` already exists.
    pub fn create(&self, path: &Path) -> Result<(), StateFileError> {
        if path.exists() {
            return Err(StateFileError::AlreadyExists(path.to_owned()));
        }
        self.save(path)
    }

    /// The v3 fingerprint of this activation (8 digits), as shown at activation.
    pub fn fingerprint(&self) -> String {
        crate::crypto::fingerprint::fingerprint_v3(
            &self.device_public_key,
            &self.activation_id,
            &self.server_public_key,
        )
    }
}

/// Writes `bytes` to a fresh 0600 temporary file beside `path`, syncs it, renames it over `path` and
/// syncs the folder. On any error the temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the state path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let tmp = folder.join(tmp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&folder)?.sync_all()
    })();
    if result.is_err() {
        // Best effort: the rename did not happen or the folder sync failed after it; a leftover
        // temporary file holds no more than the state file itself and is 0600.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    pub(crate) fn sample() -> TokenState {
        TokenState {
            counter: 3,
            ..TokenState::worked_example("http://127.0.0.1:8080")
        }
    }

    #[test]
    fn transport_key_and_version_round_trip_and_old_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        // A file as written before the two optional fields existed.
        sample().save(&path).unwrap();
        let old = std::fs::read_to_string(&path).unwrap();
        assert!(!old.contains("transportKey") && !old.contains("protocolVersion"));
        assert_eq!(TokenState::load(&path).unwrap(), sample());
        let mut state = sample();
        state.transport_key = Some(SymmetricKey::from_base64("UgYWpZCvGXD4FMnje+CHiQ==").unwrap());
        state.protocol_version = Some(ProtocolVersion::V3_3);
        state.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"protocolVersion\": \"3.3\""), "{text}");
        assert_eq!(TokenState::load(&path).unwrap(), state);
        assert!(!format!("{state:?}").contains("UgYWpZCv"));
        std::fs::write(&path, text.replace("\"3.3\"", "\"9.9\"")).unwrap();
        assert!(TokenState::load(&path).is_err());
    }

    #[test]
    fn round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        let state = sample();
        state.create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(TokenState::load(&path).unwrap(), state);
        assert!(matches!(
            state.create(&path),
            Err(StateFileError::AlreadyExists(_))
        ));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn one_line_of_json_round_trips() {
        let state = sample();
        let line = state.to_json_line();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(line.ends_with(b"\n"));
        let back = TokenState::from_json(&line, Path::new("devices.jsonl")).unwrap();
        assert_eq!(back, state);
        assert!(matches!(
            TokenState::from_json(b"{}", Path::new("devices.jsonl")),
            Err(StateFileError::Invalid { .. })
        ));
    }

    #[test]
    fn save_replaces_the_file_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        std::fs::write(&path, b"old content").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = std::fs::metadata(&path).unwrap().ino();
        // A reader holding the old file open keeps seeing all of it: the old inode is never
        // truncated or rewritten in place.
        let old_handle = std::fs::File::open(&path).unwrap();
        let mut state = sample();
        state.counter = 42;
        state.save(&path).unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_ne!(after.ino(), before, "a new file was renamed into place");
        assert_eq!(after.permissions().mode() & 0o777, 0o600);
        let mut old = String::new();
        std::io::Read::read_to_string(&mut &old_handle, &mut old).unwrap();
        assert_eq!(old, "old content");
        assert_eq!(TokenState::load(&path).unwrap().counter, 42);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        sample().save(&path).unwrap();
        let original = std::fs::read(&path).unwrap();
        // The target is now a non-empty directory: rename fails, the temp file is cleaned up.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"").unwrap();
        assert!(sample().save(&blocked).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), original);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn invalid_files_are_refused_without_echoing_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        sample().save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let broken = text.replace("hjHWTy3HA3nQdDcdnJbRMw==", "hjHWTy3HA3nQdDcdnJbRM===");
        std::fs::write(&path, broken).unwrap();
        let err = TokenState::load(&path).unwrap_err().to_string();
        assert!(err.contains("knowledgeKey"), "{err}");
        assert!(!err.contains("hjHWTy3HA3"), "{err}");
        std::fs::write(&path, text.replace("\"format\": 1", "\"format\": 9")).unwrap();
        assert!(TokenState::load(&path).is_err());
        let debug = format!("{:?}", sample());
        assert!(!debug.contains("UUOQH89H"), "{debug}");
    }
}
