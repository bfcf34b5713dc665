//! Test helper: a whole service (any signer; any store, by default sled in a temp dir; a clock the
//! test moves) and a minimal mobile token that computes codes the way a phone does
//! (`powerauth-offline.md` §9).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use offline_signer::crypto::offline_data::{DEFAULT_URI_ID, OfflineData, RequestData};
use offline_signer::crypto::signature::decimal_signature;
use offline_signer::crypto::{
    ComponentLength, CounterData, FactorKeys, MasterSecret, PrivateKey, PublicKey, SignatureType,
};
use offline_signer::model::Timestamp;
use offline_signer::service::{
    Clock, CreateNonPersonalized, CreatePersonalized, OfflinePayload, ProximityCheck,
    RegisterActivation, Service, ServiceError, SignatureSettings, VerifyRequest, VerifyResponse,
};
pub use offline_signer::service::{NoncePolicy, Settings};
use offline_signer::signer::Signer;
use offline_signer::store::{SledStore, Store};

/// A clock that only moves when the test says so. Starts at 2026-01-01T00:00:00Z.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    pub fn new() -> Self {
        Self(AtomicI64::new(1_767_225_600_000))
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
    pub fn unix_seconds(&self) -> u64 {
        (self.0.load(Ordering::SeqCst) / 1000) as u64
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.load(Ordering::SeqCst))
    }
}

/// The settings of a fresh service: PowerAuth's defaults, nonce registry on, 300 s TTL.
pub fn default_settings() -> Settings {
    Settings {
        activation: offline_signer::service::ActivationSettings::default(),
        signature: SignatureSettings {
            lookahead: 20,
            max_failed_attempts: 5,
            component_length: 8,
            proximity_otp_length: 8,
        },
        nonce_policy: NoncePolicy::Enforce,
        nonce_ttl: Duration::from_secs(300),
    }
}

pub struct Harness {
    pub service: Service,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    /// Where the store keeps its bytes, for scans for secrets.
    pub kept: Kept,
}

/// Where a harness's store keeps what it stores.
pub enum Kept {
    /// A sled store's folder (`data` inside this temporary directory, deleted with it).
    Dir(tempfile::TempDir),
    /// A PostgreSQL database (a URL with its password).
    Database(String),
}

impl Kept {
    /// Every place `secret` stands in what the store keeps (see [`crate::scan::forms`]).
    pub fn hits(&self, secret: &[u8]) -> Vec<crate::scan::Hit> {
        match self {
            Self::Dir(dir) => {
                crate::scan::scan_dir(&dir.path().join("data"), secret).expect("scan")
            }
            Self::Database(url) => crate::postgres::table_texts(url)
                .expect("dump the tables")
                .iter()
                .flat_map(|(table, text)| {
                    crate::scan::scan_bytes(std::path::Path::new(table), text, secret)
                })
                .collect(),
        }
    }
}

impl Harness {
    /// The service on `signer` with a sled store in a temporary directory.
    pub async fn new(signer: Arc<dyn Signer>, settings: Settings) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SledStore::open(&dir.path().join("data")).expect("open store"));
        Self::with_store(signer, store, settings, Kept::Dir(dir)).await
    }

    /// The service on `signer` and `store`, which keeps its bytes at `kept`.
    pub async fn with_store(
        signer: Arc<dyn Signer>,
        store: Arc<dyn Store>,
        settings: Settings,
        kept: Kept,
    ) -> Self {
        let clock = Arc::new(ManualClock::new());
        let service = Service::open(
            signer,
            Arc::clone(&store),
            settings,
            Arc::clone(&clock) as Arc<dyn Clock>,
        )
        .await
        .expect("service opens");
        Self {
            service,
            store,
            clock,
            kept,
        }
    }

    /// Creates application `id` (master key in the signer).
    pub async fn application(&self, id: &str) -> PublicKey {
        let detail = self
            .service
            .create_application(id)
            .await
            .expect("create application");
        PublicKey::from_base64(&detail.master_public_key).expect("master key is a point")
    }

    /// Registers and commits a device of `app`, returning the phone's state.
    pub async fn device(&self, app: &str, max_failed_attempts: Option<u32>) -> Device {
        let device = self.pending_device(app, max_failed_attempts).await;
        self.service
            .commit_activation(&device.activation_id, None)
            .await
            .expect("commit");
        device
    }

    /// Registers a device without committing it.
    pub async fn pending_device(&self, app: &str, max_failed_attempts: Option<u32>) -> Device {
        let device_private = PrivateKey::generate(&mut rand::rngs::OsRng);
        let registered = self
            .service
            .register_activation(RegisterActivation {
                application_id: app.to_owned(),
                user_id: "alice".to_owned(),
                device_public_key: device_private.public_key().to_base64(),
                max_failed_attempts,
                activation_flags: vec!["FLAG_A".to_owned()],
            })
            .await
            .expect("register");
        let server_public_key =
            PublicKey::from_base64(&registered.server_public_key).expect("server key");
        let master = MasterSecret::agree(&device_private, &server_public_key);
        Device {
            master_secret: master.as_key().expose().to_vec(),
            activation_id: registered.activation_id,
            keys: FactorKeys::from_master_secret(&master),
            counter: std::cell::Cell::new(
                CounterData::from_base64(&registered.ctr_data).expect("ctr data"),
            ),
            server_public_key,
        }
    }

    /// A personalized payload for `device`, checked like the phone checks it, and the request data the
    /// phone signs for it.
    pub async fn payload(
        &self,
        device: &Device,
        proximity: Option<ProximityCheck>,
    ) -> (OfflinePayload, RequestData) {
        let payload = self
            .service
            .create_personalized_payload(CreatePersonalized {
                activation_id: device.activation_id.clone(),
                data: web_flow_data(),
                nonce: None,
                proximity_check: proximity,
            })
            .await
            .expect("create personalized payload");
        let data = phone_request_data(&payload.offline_data, &device.server_public_key);
        (payload, data)
    }

    /// A non-personalized payload (signed by the master key) of application `app`.
    pub async fn non_personalized_payload(&self, app: &str) -> OfflinePayload {
        self.service
            .create_non_personalized_payload(CreateNonPersonalized {
                application_id: app.into(),
                data: web_flow_data(),
            })
            .await
            .expect("create non-personalized payload")
    }

    pub async fn verify(&self, device: &Device, data: &RequestData, code: &str) -> VerifyResponse {
        self.verify_with(device, data, code, |_| {}).await
    }

    pub async fn verify_with(
        &self,
        device: &Device,
        data: &RequestData,
        code: &str,
        tweak: impl FnOnce(&mut VerifyRequest),
    ) -> VerifyResponse {
        self.try_verify_with(device, data, code, tweak)
            .await
            .expect("verify answers")
    }

    /// [`Self::verify_with`] that hands back the service's refusal instead of panicking on it.
    pub async fn try_verify_with(
        &self,
        device: &Device,
        data: &RequestData,
        code: &str,
        tweak: impl FnOnce(&mut VerifyRequest),
    ) -> Result<VerifyResponse, ServiceError> {
        let mut request = verify_request(device, data.as_str(), code);
        tweak(&mut request);
        self.service.verify(request).await
    }

    pub fn stored(&self, device: &Device) -> offline_signer::store::Activation {
        self.store
            .activation(&device.activation_id)
            .expect("store read")
            .expect("activation exists")
    }
}

/// A Web Flow payment (`powerauth-offline.md` §5), with the `B` flag.
/// The web application's request to verify `code` for `data`: no biometry, the default length, no
/// proximity check.
pub fn verify_request(device: &Device, data: &str, code: &str) -> VerifyRequest {
    VerifyRequest {
        activation_id: device.activation_id.clone(),
        data: data.to_owned(),
        signature: code.to_owned(),
        allow_biometry: false,
        component_length: None,
        proximity_check: None,
    }
}

pub fn web_flow_data() -> String {
    "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPayment\nPlease confirm this payment\nA1*A100CZK*ICZ2730300000001165254011*D20180425\nB".to_owned()
}

/// Parses and ECDSA-checks `offline_data` with `key`, and returns the request data WITHOUT the TOTP
/// (what the web application sends; the phone's signed form adds the TOTP, see [`Device::code_for`]).
pub fn phone_request_data(offline_data: &str, key: &PublicKey) -> RequestData {
    let parsed = OfflineData::parse(offline_data).expect("offlineData parses");
    parsed.verify(key).expect("offlineData signature verifies");
    let fields = parsed.web_flow().expect("Web Flow payload");
    RequestData::for_operation(
        DEFAULT_URI_ID,
        parsed.nonce(),
        fields.operation_id,
        fields.operation_data,
        None,
    )
}

/// The TOTP line of a payload, if it has one.
pub fn payload_totp(offline_data: &str) -> Option<String> {
    let parsed = OfflineData::parse(offline_data).expect("offlineData parses");
    parsed.web_flow().and_then(|f| f.totp.map(str::to_owned))
}

/// Registers a device holding `device_key` in `application` (user `u`, no flags, the default failure
/// limit) and commits it, for a test that keeps its own device key; returns the activation id.
pub async fn register_and_commit(
    service: &Service,
    application: &str,
    device_key: &PublicKey,
) -> String {
    let registered = service
        .register_activation(RegisterActivation {
            application_id: application.to_owned(),
            user_id: "u".to_owned(),
            device_public_key: device_key.to_base64(),
            max_failed_attempts: None,
            activation_flags: Vec::new(),
        })
        .await
        .expect("register");
    service
        .commit_activation(&registered.activation_id, None)
        .await
        .expect("commit");
    registered.activation_id
}

/// How the phone approves a code: the factors, the proximity TOTP it adds, digits per component.
#[derive(Clone, Copy, Debug)]
pub struct Approval<'a> {
    /// Possession + knowledge (PIN) or possession + biometry.
    pub signature_type: SignatureType,
    /// The TOTP line of the payload, signed with the data when present.
    pub totp: Option<&'a str>,
    /// Digits per code component, 4..=8.
    pub length: u8,
}

impl Approval<'static> {
    /// With the PIN (possession + knowledge), no TOTP, 8 digits: what the phone does by default.
    pub const PIN: Self = Approval {
        signature_type: SignatureType::PossessionKnowledge,
        totp: None,
        length: 8,
    };
    /// With biometry (possession + biometry), no TOTP, 8 digits.
    pub const BIOMETRY: Self = Approval {
        signature_type: SignatureType::PossessionBiometry,
        ..Self::PIN
    };
}

impl<'a> Approval<'a> {
    /// The same approval, signing the proximity TOTP `totp` with the data.
    pub fn with_totp(self, totp: &'a str) -> Self {
        Approval {
            totp: Some(totp),
            ..self
        }
    }

    /// The same approval with `length` digits per component.
    pub fn with_length(self, length: u8) -> Self {
        Approval { length, ..self }
    }
}

/// The phone's state: factor keys and its own copy of the hash-based counter.
pub struct Device {
    pub activation_id: String,
    /// The master shared secret (a test's view into the phone, to scan the disk for it).
    pub master_secret: Vec<u8>,
    pub keys: FactorKeys,
    pub counter: std::cell::Cell<CounterData>,
    pub server_public_key: PublicKey,
}

impl Device {
    /// The code at the phone's current counter, approved as `approval` says, without advancing it.
    pub fn code_for(&self, data: &RequestData, approval: Approval<'_>) -> String {
        let signed = match approval.totp {
            Some(totp) => data.with_proximity_totp(totp).expect("proximity body"),
            None => data.clone(),
        };
        decimal_signature(
            &self.keys,
            approval.signature_type,
            &self.counter.get(),
            signed.to_data_to_sign().as_bytes(),
            ComponentLength::new(i64::from(approval.length)).expect("4..=8"),
        )
    }

    /// What the phone does: computes the PIN code (possession + knowledge, 8 digits) and advances.
    pub fn sign(&self, data: &RequestData) -> String {
        self.sign_as(data, Approval::PIN)
    }

    /// Moves the phone's counter `steps` positions ahead, as if it had shown codes nobody used.
    pub fn skip(&self, steps: u32) {
        self.counter.set(self.counter.get().advance(steps));
    }

    /// Computes a code and advances the phone's counter (it does so for every code it shows).
    pub fn sign_as(&self, data: &RequestData, approval: Approval<'_>) -> String {
        let code = self.code_for(data, approval);
        self.counter.set(self.counter.get().next());
        code
    }
}
