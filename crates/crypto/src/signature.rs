//! Multi-factor PowerAuth signature codes (`spec/powerauth-offline.md` §7.2–§7.5).
//!
//! A [`SignatureType`] names an ordered list of factor keys `K[0..m]` (m = 1..=3). With counter data
//! `C` (16 bytes) and message `D`, each component is
//!
//! ```text
//! KD = HMAC(K[i], C)
//! for j in 0..i: KD = HMAC(key = HMAC(K[j+1], C), msg = KD)
//! COMPONENT[i] = HMAC(KD, D)                                    (32 bytes)
//! ```
//!
//! The offline (decimal) code takes the last 4 bytes of each component big-endian, masks the top
//! bit, reduces modulo 10^L and prints exactly L digits; the components are joined with `-`.
//! The online v3.1 format concatenates the last 16 bytes of each component and Base64-encodes them.

use std::fmt;
use std::str::FromStr;

use hmac::Mac as _;
use zeroize::Zeroizing;

use super::kdf::{DerivedKeys, MasterSecret, SymmetricKey};
use super::{CounterData, CryptoError, b64};

pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// One authentication factor, i.e. one factor key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Factor {
    /// `KEY_SIGNATURE_POSSESSION` (Kp).
    Possession,
    /// `KEY_SIGNATURE_KNOWLEDGE` (Kk), unlocked by the PIN.
    Knowledge,
    /// `KEY_SIGNATURE_BIOMETRY` (Kb).
    Biometry,
}

/// The six signature types of §7.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureType {
    /// `POSSESSION` / `possession`: `[Kp]`.
    Possession,
    /// `KNOWLEDGE` / `knowledge`: `[Kk]`.
    Knowledge,
    /// `BIOMETRY` / `biometry`: `[Kb]`.
    Biometry,
    /// `POSSESSION_KNOWLEDGE` / `possession_knowledge`: `[Kp, Kk]`.
    PossessionKnowledge,
    /// `POSSESSION_BIOMETRY` / `possession_biometry`: `[Kp, Kb]`.
    PossessionBiometry,
    /// `POSSESSION_KNOWLEDGE_BIOMETRY` / `possession_knowledge_biometry`: `[Kp, Kk, Kb]`.
    PossessionKnowledgeBiometry,
}

impl SignatureType {
    /// All six types, 1FA first.
    pub const ALL: [Self; 6] = [
        Self::Possession,
        Self::Knowledge,
        Self::Biometry,
        Self::PossessionKnowledge,
        Self::PossessionBiometry,
        Self::PossessionKnowledgeBiometry,
    ];

    /// The upper-case enum name used on the REST wire, e.g. `POSSESSION_KNOWLEDGE`.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::Possession => "POSSESSION",
            Self::Knowledge => "KNOWLEDGE",
            Self::Biometry => "BIOMETRY",
            Self::PossessionKnowledge => "POSSESSION_KNOWLEDGE",
            Self::PossessionBiometry => "POSSESSION_BIOMETRY",
            Self::PossessionKnowledgeBiometry => "POSSESSION_KNOWLEDGE_BIOMETRY",
        }
    }

    /// The lower-case name used in HTTP headers and vector files, e.g. `possession_knowledge`.
    pub fn header_name(self) -> &'static str {
        match self {
            Self::Possession => "possession",
            Self::Knowledge => "knowledge",
            Self::Biometry => "biometry",
            Self::PossessionKnowledge => "possession_knowledge",
            Self::PossessionBiometry => "possession_biometry",
            Self::PossessionKnowledgeBiometry => "possession_knowledge_biometry",
        }
    }

    /// Parses either the wire name or the header name (exact spelling, no trimming).
    pub fn parse(name: &str) -> Result<Self, CryptoError> {
        Self::ALL
            .into_iter()
            .find(|t| t.wire_name() == name || t.header_name() == name)
            .ok_or_else(|| CryptoError::UnknownSignatureType(name.chars().take(64).collect()))
    }

    /// The ordered factors whose keys make up this type.
    pub fn factors(self) -> &'static [Factor] {
        use Factor::{Biometry as B, Knowledge as K, Possession as P};
        match self {
            Self::Possession => &[P],
            Self::Knowledge => &[K],
            Self::Biometry => &[B],
            Self::PossessionKnowledge => &[P, K],
            Self::PossessionBiometry => &[P, B],
            Self::PossessionKnowledgeBiometry => &[P, K, B],
        }
    }
}

impl FromStr for SignatureType {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SignatureType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// The three factor keys of one activation (16 bytes each, zeroizing, redacted `Debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorKeys {
    /// Kp = `KDF(KEY_MASTER_SECRET, 1)`.
    pub possession: SymmetricKey,
    /// Kk = `KDF(KEY_MASTER_SECRET, 2)`.
    pub knowledge: SymmetricKey,
    /// Kb = `KDF(KEY_MASTER_SECRET, 3)`.
    pub biometry: SymmetricKey,
}

impl FactorKeys {
    /// Groups three keys.
    pub fn new(possession: SymmetricKey, knowledge: SymmetricKey, biometry: SymmetricKey) -> Self {
        Self {
            possession,
            knowledge,
            biometry,
        }
    }

    /// Takes the three factor keys out of a derived key set.
    pub fn from_derived(keys: &DerivedKeys) -> Self {
        Self::new(
            keys.possession.clone(),
            keys.knowledge.clone(),
            keys.biometry.clone(),
        )
    }

    /// Derives the factor keys from the master secret (KDF indices 1, 2, 3).
    pub fn from_master_secret(master: &MasterSecret) -> Self {
        Self::from_derived(&master.derive())
    }

    /// The key of one factor.
    pub fn key(&self, factor: Factor) -> &SymmetricKey {
        match factor {
            Factor::Possession => &self.possession,
            Factor::Knowledge => &self.knowledge,
            Factor::Biometry => &self.biometry,
        }
    }

    /// The ordered key list of `signature_type` (§7.2).
    pub fn keys_for(&self, signature_type: SignatureType) -> Vec<&SymmetricKey> {
        signature_type
            .factors()
            .iter()
            .map(|f| self.key(*f))
            .collect()
    }
}

/// Digits per decimal component, 4..=8 (default 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ComponentLength(u8);

impl ComponentLength {
    /// The default length, 8 digits.
    pub const DEFAULT: Self = Self(8);
    /// Smallest allowed length.
    pub const MIN: u8 = 4;
    /// Largest allowed length.
    pub const MAX: u8 = 8;

    /// Validates a length; outside 4..=8 is [`CryptoError::InvalidComponentLength`].
    pub fn new(length: i64) -> Result<Self, CryptoError> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&length) {
            Ok(Self(length as u8))
        } else {
            Err(CryptoError::InvalidComponentLength(length))
        }
    }

    /// The number of digits.
    pub fn get(self) -> u8 {
        self.0
    }

    /// `10^L`, the modulus of one component.
    pub(crate) fn modulus(self) -> u32 {
        10u32.pow(u32::from(self.0))
    }
}

impl Default for ComponentLength {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One 32-byte component MAC `COMPONENT[i]` of §7.3.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Component(pub [u8; 32]);

impl Component {
    /// The decimal value `(BE32(last 4 bytes) & 0x7FFFFFFF) mod 10^L` (§7.4).
    pub fn decimal_value(&self, length: ComponentLength) -> u32 {
        truncate_31(&self.0) % length.modulus()
    }

    /// The decimal value printed as exactly L digits with leading zeros.
    pub fn to_decimal(&self, length: ComponentLength) -> String {
        format!(
            "{:0width$}",
            self.decimal_value(length),
            width = usize::from(length.get())
        )
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Component")
            .field(&hex::encode(self.0))
            .finish()
    }
}

/// `BE32(bytes[28..32]) & 0x7FFFFFFF`.
pub(crate) fn truncate_31(bytes: &[u8; 32]) -> u32 {
    u32::from_be_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]) & 0x7FFF_FFFF
}

/// `HMAC(key, message)` as 32 bytes.
pub(crate) fn hmac(key: &[u8], message: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac =
        <HmacSha256 as hmac::Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The component keys `KD[i]` of §7.3, given `counter_macs[i] = HMAC(K[i], C)` for the ordered keys.
pub(crate) fn component_keys(counter_macs: &[&[u8; 32]]) -> Vec<Zeroizing<[u8; 32]>> {
    (0..counter_macs.len())
        .map(|i| {
            let mut kd = Zeroizing::new(*counter_macs[i]);
            for next in &counter_macs[1..=i] {
                kd = hmac(next.as_slice(), kd.as_slice());
            }
            kd
        })
        .collect()
}

/// Computes `COMPONENT[0..m]` (§7.3) for the ordered `keys` (1..=3 of them), counter `C` and data `D`.
pub fn compute_components(
    keys: &[&SymmetricKey],
    counter: &CounterData,
    data: &[u8],
) -> Result<Vec<Component>, CryptoError> {
    if !(1..=3).contains(&keys.len()) {
        return Err(CryptoError::InvalidFactorCount(keys.len()));
    }
    let counter_macs: Vec<_> = keys
        .iter()
        .map(|k| hmac(k.expose(), counter.as_bytes()))
        .collect();
    let refs: Vec<&[u8; 32]> = counter_macs.iter().map(|m| &**m).collect();
    Ok(component_keys(&refs)
        .iter()
        .map(|kd| Component(*hmac(kd.as_slice(), data)))
        .collect())
}

/// The decimal code of §7.4: each component as L digits, joined with `-`.
pub fn format_decimal(components: &[Component], length: ComponentLength) -> String {
    components
        .iter()
        .map(|c| c.to_decimal(length))
        .collect::<Vec<_>>()
        .join("-")
}

/// The online v3.1 code of §7.5: Base64 of the last 16 bytes of each component, concatenated.
pub fn format_base64(components: &[Component]) -> String {
    let bytes: Vec<u8> = components
        .iter()
        .flat_map(|c| c.0[16..].iter().copied())
        .collect();
    b64::encode(bytes)
}

/// The offline decimal code for `signature_type` over `data` at `counter` (what the app shows).
pub fn decimal_signature(
    keys: &FactorKeys,
    signature_type: SignatureType,
    counter: &CounterData,
    data: &[u8],
    length: ComponentLength,
) -> String {
    format_decimal(
        &type_components(keys, signature_type, counter, data),
        length,
    )
}

/// The online v3.1 Base64 code for `signature_type` over `data` at `counter`.
pub fn base64_signature(
    keys: &FactorKeys,
    signature_type: SignatureType,
    counter: &CounterData,
    data: &[u8],
) -> String {
    format_base64(&type_components(keys, signature_type, counter, data))
}

fn type_components(
    keys: &FactorKeys,
    signature_type: SignatureType,
    counter: &CounterData,
    data: &[u8],
) -> Vec<Component> {
    compute_components(&keys.keys_for(signature_type), counter, data)
        .expect("every signature type has 1 to 3 factors")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_keys() -> FactorKeys {
        FactorKeys::new(
            SymmetricKey::from_base64("UUOQH89Hoa/Nw7ew5rGTPw==").unwrap(),
            SymmetricKey::from_base64("hjHWTy3HA3nQdDcdnJbRMw==").unwrap(),
            SymmetricKey::from_base64("S9fNvGUhUafp18upFWzCoA==").unwrap(),
        )
    }

    #[test]
    fn names_parse_both_ways() {
        for t in SignatureType::ALL {
            assert_eq!(SignatureType::parse(t.wire_name()).unwrap(), t);
            assert_eq!(t.header_name().parse::<SignatureType>().unwrap(), t);
            assert_eq!(
                t.factors().len(),
                FactorKeys::keys_for(&example_keys(), t).len()
            );
        }
        assert!(SignatureType::parse("Possession").is_err());
        assert!(SignatureType::parse(" possession").is_err());
    }

    #[test]
    fn component_length_bounds() {
        assert!(ComponentLength::new(3).is_err());
        assert!(ComponentLength::new(9).is_err());
        assert_eq!(ComponentLength::new(4).unwrap().get(), 4);
        assert_eq!(ComponentLength::default().get(), 8);
    }

    #[test]
    fn intermediate_values_of_worked_example() {
        let keys = example_keys();
        let c0 = CounterData::from_base64("AAECAwQFBgcICQoLDA0ODw==").unwrap();
        let hk = hmac(keys.knowledge.expose(), c0.as_bytes());
        let kd = component_keys(&[&hmac(keys.possession.expose(), c0.as_bytes()), &hk]);
        assert_eq!(
            hex::encode(kd[0].as_slice()),
            "54e3f71d0332f76baa60ed552169890d5cf1dc740fd57bc36ce672a8a374d6e4"
        );
        assert_eq!(
            hex::encode(kd[1].as_slice()),
            "dca32a11250df4045d0d403da644f2908b4ca7f8e716439be68435576bee22ac"
        );
    }

    #[test]
    fn factor_count_is_checked() {
        let c = CounterData::from_bytes([0; 16]);
        assert_eq!(
            compute_components(&[], &c, b""),
            Err(CryptoError::InvalidFactorCount(0))
        );
        let k = example_keys();
        let four = [&k.possession, &k.knowledge, &k.biometry, &k.possession];
        assert_eq!(
            compute_components(&four, &c, b""),
            Err(CryptoError::InvalidFactorCount(4))
        );
    }

    #[test]
    fn short_length_is_suffix_of_long() {
        let keys = example_keys();
        let c = CounterData::from_bytes([3; 16]);
        let long = decimal_signature(
            &keys,
            SignatureType::PossessionKnowledgeBiometry,
            &c,
            b"x",
            ComponentLength::DEFAULT,
        );
        let short = decimal_signature(
            &keys,
            SignatureType::PossessionKnowledgeBiometry,
            &c,
            b"x",
            ComponentLength::new(5).unwrap(),
        );
        let expect: Vec<_> = long.split('-').map(|p| &p[3..]).collect();
        assert_eq!(short, expect.join("-"));
        assert_eq!(
            base64_signature(&keys, SignatureType::PossessionKnowledgeBiometry, &c, b"x").len(),
            64
        );
    }
}
