//! The v3 device-key fingerprint shown at activation (`spec/powerauth-offline.md` §10,
//! `public-key-fingerprint-v3`).
//!
//! `h = SHA256(X_dev ‖ UTF8(activationId) ‖ X_srv)` where X is the **minimal** unsigned big-endian
//! x-coordinate (leading zero bytes stripped); the fingerprint is
//! `(BE32(h[28..32]) & 0x7FFFFFFF) mod 10^8` printed as 8 digits.

use sha2::Digest as _;

use super::keys::PublicKey;

/// The 8-digit v3 fingerprint of `device` for `activation_id` and `server`.
pub fn fingerprint_v3(device: &PublicKey, activation_id: &str, server: &PublicKey) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(minimal(&device.x_bytes()));
    hasher.update(activation_id.as_bytes());
    hasher.update(minimal(&server.x_bytes()));
    let h: [u8; 32] = hasher.finalize().into();
    let value = u32::from_be_bytes([h[28], h[29], h[30], h[31]]) & 0x7FFF_FFFF;
    format!("{:08}", value % 100_000_000)
}

fn minimal(x: &[u8; 32]) -> &[u8] {
    let first = x.iter().position(|b| *b != 0).unwrap_or(x.len());
    &x[first..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_written_out() {
        let dev = PublicKey::from_base64(
            "BH/XZpylbWzTHS9LWR7ckCfHPPOG0MrsP9C2hmXXgQYpzmKSP4w0SpZz5227RKpEGkIq3Jew6p3KxrbUGDTC+nU=",
        )
        .unwrap();
        let srv = PublicKey::from_base64(
            "BP0G8/tV/kDLDaGCQmoeaOAabLQXjYF/6lgqVpUI3cS6FTTtIzPzOY137vyZFSthKorKvq0iih1PLUeeEFUkAGE=",
        )
        .unwrap();
        let id = "c564e700-7e86-4a87-b6c8-a5a0cc89683f";
        let mut m = dev.x_bytes().to_vec();
        m.extend_from_slice(id.as_bytes());
        m.extend_from_slice(&srv.x_bytes());
        let h = sha2::Sha256::digest(&m);
        let v = (u32::from_be_bytes([h[28], h[29], h[30], h[31]]) & 0x7FFF_FFFF) % 100_000_000;
        let fp = fingerprint_v3(&dev, id, &srv);
        assert_eq!(fp, format!("{v:08}"));
        assert_eq!(fp.len(), 8);
    }

    #[test]
    fn minimal_strips_leading_zeros() {
        let mut x = [0u8; 32];
        x[1] = 5;
        assert_eq!(minimal(&x).len(), 31);
    }
}
