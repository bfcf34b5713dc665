//! The verifier's counter-window scan (`spec/powerauth-offline.md` §8.1).
//!
//! For each candidate message `D` (the plain `DATA_TO_SIGN`, or one per proximity TOTP step,
//! current step first), walk the hash chain from the server's counter data for `lookahead`
//! positions; at each position try the allowed signature types in order (candidate-major, then
//! counter-major, then type-minor) and stop at the first code that equals the submitted one. The
//! comparison is constant-time over the exact bytes (no trimming or normalization).
//!
//! Speed: everything that does not depend on `D` — `HMAC(K, C)` per factor, the chained component
//! keys `KD`, and the HMAC key schedule of each `KD` — is computed once per counter position and
//! reused for every candidate; each component then costs one keyed-HMAC clone plus `D`.

use hmac::Mac as _;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::counter::CounterData;
use super::offline_data::DataToSign;
use super::signature::{
    ComponentLength, Factor, FactorKeys, HmacSha256, SignatureType, truncate_31,
};

/// Longest decimal code: 3 components of 8 digits and 2 dashes.
const MAX_CODE_LEN: usize = 3 * 8 + 2;

/// What to search for. All fields are inputs of §8.1.
#[derive(Debug, Clone, Copy)]
pub struct WindowSearch<'a> {
    /// The activation's factor keys.
    pub keys: &'a FactorKeys,
    /// The server's current counter data (position 0 of the window).
    pub counter: CounterData,
    /// Allowed types in the order they are tried at each position.
    pub allowed_types: &'a [SignatureType],
    /// Candidate messages, current TOTP step first.
    pub candidates: &'a [DataToSign],
    /// Number of counter positions to try (`CTR_LOOK_AHEAD`, default 20).
    pub lookahead: u32,
    /// Digits per component.
    pub component_length: ComponentLength,
    /// The code exactly as submitted.
    pub code: &'a str,
}

/// A successful match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowMatch {
    /// 0-based offset from the server's counter; the new numeric counter is `counter + position + 1`.
    pub position: u32,
    /// The type that matched.
    pub signature_type: SignatureType,
    /// Index into [`WindowSearch::candidates`] of the message that matched.
    pub candidate: usize,
    /// The counter data at the matched position (`C`).
    pub counter_data: CounterData,
    /// `NEXT(C)`: the counter data to store after the match.
    pub next_counter_data: CounterData,
}

/// One distinct component MAC recipe: `KD = HMAC(K[start], C)` then, for each factor `f` of
/// `chain` in order, `KD = HMAC(HMAC(K[f], C), KD)`. Component `i` of key list `K` is
/// `start = K[i]`, `chain = K[1..=i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recipe {
    start: Factor,
    chain: Vec<Factor>,
}

/// Per-position state reused across candidates: HMAC states keyed with each recipe's `KD`.
struct Position {
    counter: CounterData,
    keyed: Vec<HmacSha256>,
}

impl WindowSearch<'_> {
    /// Runs the scan; `None` when no position, type and candidate gives exactly [`Self::code`].
    pub fn find(&self) -> Option<WindowMatch> {
        let length = self.component_length;
        let mut recipes: Vec<Recipe> = Vec::new();
        let mut types: Vec<(SignatureType, Vec<usize>)> = Vec::new();
        for &t in self.allowed_types {
            let factors = t.factors();
            // A type whose code length cannot equal the submitted one is skipped (length is public).
            let expected_len = factors.len() * usize::from(length.get()) + factors.len() - 1;
            if expected_len != self.code.len() {
                continue;
            }
            let indices = (0..factors.len())
                .map(|i| {
                    let recipe = Recipe {
                        start: factors[i],
                        chain: factors[1..=i].to_vec(),
                    };
                    recipes
                        .iter()
                        .position(|r| *r == recipe)
                        .unwrap_or_else(|| {
                            recipes.push(recipe);
                            recipes.len() - 1
                        })
                })
                .collect();
            types.push((t, indices));
        }
        if types.is_empty() {
            return None;
        }
        self.scan(&recipes, &types)
    }

    fn scan(
        &self,
        recipes: &[Recipe],
        types: &[(SignatureType, Vec<usize>)],
    ) -> Option<WindowMatch> {
        let factor_macs = FactorMacs::new(self.keys);
        let mut positions: Vec<Position> = Vec::new();
        // Computed codes are valid one-time codes for later positions: wipe them afterwards.
        let mut values = Zeroizing::new(vec![0u32; recipes.len()]);
        let mut code = Zeroizing::new([0u8; MAX_CODE_LEN]);
        for (candidate, data) in self.candidates.iter().enumerate() {
            for offset in 0..self.lookahead {
                let index = offset as usize;
                if index == positions.len() {
                    let counter = positions.last().map_or(self.counter, |p| p.counter.next());
                    positions.push(Position::new(&factor_macs, recipes, counter));
                }
                let position = &positions[index];
                for (value, keyed) in values.iter_mut().zip(&position.keyed) {
                    let mut mac = keyed.clone();
                    mac.update(data.as_bytes());
                    let component: [u8; 32] = mac.finalize().into_bytes().into();
                    *value = truncate_31(&component) % self.component_length.modulus();
                }
                for (signature_type, indices) in types {
                    let n = write_code(
                        &mut code,
                        indices.iter().map(|i| values[*i]),
                        self.component_length,
                    );
                    if bool::from(code[..n].ct_eq(self.code.as_bytes())) {
                        return Some(WindowMatch {
                            position: offset,
                            signature_type: *signature_type,
                            candidate,
                            counter_data: position.counter,
                            next_counter_data: position.counter.next(),
                        });
                    }
                }
            }
        }
        None
    }
}

/// HMAC states pre-keyed with each factor key, so that `HMAC(K, C)` costs two compressions.
struct FactorMacs {
    possession: HmacSha256,
    knowledge: HmacSha256,
    biometry: HmacSha256,
}

impl FactorMacs {
    fn new(keys: &FactorKeys) -> Self {
        let keyed = |f: Factor| {
            <HmacSha256 as hmac::Mac>::new_from_slice(keys.key(f).expose())
                .expect("HMAC accepts keys of any length")
        };
        Self {
            possession: keyed(Factor::Possession),
            knowledge: keyed(Factor::Knowledge),
            biometry: keyed(Factor::Biometry),
        }
    }

    fn counter_mac(&self, factor: Factor, counter: &CounterData) -> Zeroizing<[u8; 32]> {
        let mut mac = match factor {
            Factor::Possession => self.possession.clone(),
            Factor::Knowledge => self.knowledge.clone(),
            Factor::Biometry => self.biometry.clone(),
        };
        mac.update(counter.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }
}

impl Position {
    fn new(factor_macs: &FactorMacs, recipes: &[Recipe], counter: CounterData) -> Self {
        let mut counter_macs: Vec<(Factor, Zeroizing<[u8; 32]>)> = Vec::with_capacity(3);
        let mut counter_mac = |f: Factor| -> Zeroizing<[u8; 32]> {
            if let Some((_, m)) = counter_macs.iter().find(|(g, _)| *g == f) {
                return m.clone();
            }
            let m = factor_macs.counter_mac(f, &counter);
            counter_macs.push((f, m.clone()));
            m
        };
        let keyed = recipes
            .iter()
            .map(|recipe| {
                let mut kd = counter_mac(recipe.start);
                for f in &recipe.chain {
                    let key = counter_mac(*f);
                    let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(key.as_slice())
                        .expect("HMAC accepts keys of any length");
                    mac.update(kd.as_slice());
                    kd = Zeroizing::new(mac.finalize().into_bytes().into());
                }
                <HmacSha256 as hmac::Mac>::new_from_slice(kd.as_slice())
                    .expect("HMAC accepts keys of any length")
            })
            .collect();
        Self { counter, keyed }
    }
}

/// Writes the components as `L`-digit decimals joined by `-` into `out`; returns the length.
fn write_code(
    out: &mut [u8; MAX_CODE_LEN],
    values: impl Iterator<Item = u32>,
    length: ComponentLength,
) -> usize {
    let digits = usize::from(length.get());
    let mut n = 0;
    for (i, mut value) in values.enumerate() {
        if i > 0 {
            out[n] = b'-';
            n += 1;
        }
        for d in (0..digits).rev() {
            out[n + d] = b'0' + (value % 10) as u8;
            value /= 10;
        }
        n += digits;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kdf::SymmetricKey;
    use crate::signature::decimal_signature;

    fn keys() -> FactorKeys {
        FactorKeys::new(
            SymmetricKey::from_bytes([1; 16]),
            SymmetricKey::from_bytes([2; 16]),
            SymmetricKey::from_bytes([3; 16]),
        )
    }

    fn search<'a>(
        keys: &'a FactorKeys,
        types: &'a [SignatureType],
        candidates: &'a [DataToSign],
        code: &'a str,
        length: ComponentLength,
    ) -> Option<WindowMatch> {
        WindowSearch {
            keys,
            counter: CounterData::from_bytes([7; 16]),
            allowed_types: types,
            candidates,
            lookahead: 20,
            component_length: length,
            code,
        }
        .find()
    }

    #[test]
    fn every_type_and_length_matches_at_its_position() {
        let keys = keys();
        let data = [
            DataToSign::from_bytes(b"first".to_vec()),
            DataToSign::from_bytes(b"second".to_vec()),
        ];
        let start = CounterData::from_bytes([7; 16]);
        for t in SignatureType::ALL {
            for l in 4..=8 {
                let length = ComponentLength::new(l).unwrap();
                let position = (l as u32 * 3) % 20;
                let c = start.advance(position);
                let code = decimal_signature(&keys, t, &c, b"second", length);
                let m = search(&keys, &[t], &data, &code, length).unwrap();
                assert_eq!(
                    (m.position, m.signature_type, m.candidate),
                    (position, t, 1)
                );
                assert_eq!(m.counter_data, c);
                assert_eq!(m.next_counter_data, c.next());
            }
        }
    }

    #[test]
    fn types_are_tried_in_order_and_codes_exactly() {
        let keys = keys();
        let data = [DataToSign::from_bytes(b"d".to_vec())];
        let c = CounterData::from_bytes([7; 16]);
        let l = ComponentLength::DEFAULT;
        let code = decimal_signature(&keys, SignatureType::PossessionBiometry, &c, b"d", l);
        let types = [
            SignatureType::PossessionKnowledge,
            SignatureType::PossessionBiometry,
        ];
        assert_eq!(
            search(&keys, &types, &data, &code, l)
                .unwrap()
                .signature_type,
            SignatureType::PossessionBiometry
        );
        assert!(search(&keys, &types[..1], &data, &code, l).is_none());
        assert!(search(&keys, &types, &data, &format!(" {code}"), l).is_none());
        assert!(search(&keys, &types, &data, &code.replace('-', ""), l).is_none());
        assert!(search(&keys, &types, &data, "", l).is_none());
    }

    #[test]
    fn write_code_pads_with_zeros() {
        let mut buf = [0u8; MAX_CODE_LEN];
        let n = write_code(
            &mut buf,
            [42u32, 7].into_iter(),
            ComponentLength::new(4).unwrap(),
        );
        assert_eq!(&buf[..n], b"0042-0007");
    }
}
