//! Reaching the token: start-up path checks (module file, `SOFTHSM2_CONF`, its token directory),
//! `C_Initialize`, choosing the token by label or serial (exactly one match), the single counted
//! login, and the classification of PKCS#11 return codes into session faults, fatal PIN errors and
//! ordinary errors.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;

use crate::signer::config::{TokenSelector, softhsm_token_dir};
use crate::signer::{OpenError, SignerError};

/// Every `C_Login` this process made through the signer (successful or not).
static LOGIN_ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// How many `C_Login` calls the signer has made in this process. Tests use it to prove that a
/// rejected PIN is tried exactly once.
pub fn login_attempts() -> u64 {
    LOGIN_ATTEMPTS.load(Ordering::SeqCst)
}

/// Checks, before `C_Initialize` (which would only say `CKR_GENERAL_ERROR`), that the module file
/// exists and, for SoftHSM, that `SOFTHSM2_CONF` and the token directory it names exist.
pub(crate) fn check_paths(module: &Path) -> Result<(), OpenError> {
    if !module.is_file() {
        return Err(OpenError::ModuleNotFound {
            path: module.display().to_string(),
        });
    }
    let is_softhsm = module
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().contains("softhsm"));
    if !is_softhsm {
        return Ok(());
    }
    let Some(conf) = std::env::var_os("SOFTHSM2_CONF") else {
        // SoftHSM then reads its system-wide configuration; it reports its own problems.
        return Ok(());
    };
    let conf = Path::new(&conf);
    if !conf.is_file() {
        return Err(OpenError::ConfigMissing {
            path: conf.display().to_string(),
        });
    }
    match softhsm_token_dir(conf) {
        Ok(Some(dir)) if !dir.is_dir() => Err(OpenError::TokenDirMissing {
            path: dir.display().to_string(),
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(OpenError::Token(SignerError::Internal(format!(
            "reading SOFTHSM2_CONF {}: {}",
            conf.display(),
            e.kind()
        )))),
    }
}

/// Loads the module (once per process).
pub(crate) fn load(module: &Path) -> Result<Pkcs11, OpenError> {
    check_paths(module)?;
    Pkcs11::new(module).map_err(|e| {
        OpenError::Token(SignerError::Internal(format!(
            "cannot load PKCS#11 module {}: {e}",
            module.display()
        )))
    })
}

/// `C_Initialize` with OS locking; "already initialized" counts as success.
pub(crate) fn initialize(lib: &Pkcs11) -> Result<(), CkError> {
    match lib.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Finds the one slot whose token matches the selector.
pub(crate) fn find_slot(lib: &Pkcs11, selector: &TokenSelector) -> Result<Slot, OpenError> {
    let slots = lib
        .get_slots_with_token()
        .map_err(|e| internal("C_GetSlotList", &e))?;
    let mut matches = Vec::new();
    for slot in slots {
        let Ok(info) = lib.get_token_info(slot) else {
            continue;
        };
        let hit = match selector {
            TokenSelector::Label(l) => info.label().trim_end() == l.trim_end(),
            TokenSelector::Serial(s) => info.serial_number().trim_end() == s.trim_end(),
        };
        if hit && info.token_initialized() {
            matches.push(slot);
        }
    }
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(OpenError::TokenNotFound {
            selector: selector.to_string(),
        }),
        more => Err(OpenError::AmbiguousToken {
            selector: selector.to_string(),
            count: more.len(),
        }),
    }
}

/// Logs the user in to the token of `selector`: exactly one `C_Login` call, counted. A refused PIN
/// is never retried by any caller; a token without a user PIN is
/// [`OpenError::UserPinNotInitialized`], which the token answers before it looks at the PIN, so a
/// later try costs no PIN attempt.
pub(crate) fn login(
    session: &Session,
    pin: &SecretString,
    selector: &TokenSelector,
) -> Result<(), OpenError> {
    LOGIN_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => {
            Err(OpenError::UserPinNotInitialized {
                selector: selector.to_string(),
            })
        }
        Err(e) => Err(match classify(&e) {
            Fault::Pin(err) => err,
            Fault::Session(_) => SignerError::TokenUnavailable,
            Fault::Other(err) => err,
        }
        .into()),
    }
}

/// What a failed PKCS#11 call means for the caller.
#[derive(Debug)]
pub(crate) enum Fault {
    /// The session or the token is gone: drop the session, retry once, then re-initialize.
    Session(RvError),
    /// A PIN problem: fatal, never retried.
    Pin(SignerError),
    /// Anything else: answer this call with the error.
    Other(SignerError),
}

/// Sorts a cryptoki error.
pub(crate) fn classify(e: &CkError) -> Fault {
    match e {
        CkError::Pkcs11(rv, function) => match rv {
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::GeneralError
            | RvError::CryptokiNotInitialized
            | RvError::UserNotLoggedIn
            | RvError::SlotIdInvalid => Fault::Session(*rv),
            RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange => {
                Fault::Pin(SignerError::PinRejected)
            }
            RvError::PinLocked | RvError::PinExpired => Fault::Pin(SignerError::PinLocked),
            RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange => {
                Fault::Other(SignerError::DecryptFailed)
            }
            RvError::MechanismInvalid => Fault::Other(SignerError::Unsupported(format!(
                "a mechanism used by {function}"
            ))),
            _ => Fault::Other(internal(&function.to_string(), e)),
        },
        other => Fault::Other(SignerError::Internal(format!("cryptoki: {other}"))),
    }
}

/// An internal error naming the step and the return code (never data).
pub(crate) fn internal(step: &str, e: &CkError) -> SignerError {
    match e {
        CkError::Pkcs11(rv, _) => SignerError::Internal(format!("{step}: {rv:?}")),
        other => SignerError::Internal(format!("{step}: {other}")),
    }
}
