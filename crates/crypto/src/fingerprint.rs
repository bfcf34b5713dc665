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
    hasher.update(minimal_x(device));
    hasher.update(activation_id.as_bytes());
    hasher.update(minimal_x(server));
    let h: [u8; 32] = hasher.finalize().into();
    let value = u32::from_be_bytes([h[28], h[29], h[30], h[31]]) & 0x7FFF_FFFF;
    format!("{:08}", value % 100_000_000)
}

/// The x-coordinate as a minimal unsigned big-endian integer: leading zero bytes stripped, not
/// padded (usually 32 bytes, occasionally fewer).
pub fn minimal_x(key: &PublicKey) -> Vec<u8> {
    let x = key.x_bytes();
    let first = x.iter().position(|b| *b != 0).unwrap_or(x.len());
    x[first..].to_vec()
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

    /// Cases copied from upstream's `public-key-fingerprint-v3.json` (wultra/powerauth-crypto,
    /// `powerauth-docs/test-vectors`): a leading-zero fingerprint and an X starting with 0x01.
    #[test]
    fn upstream_cases() {
        for (dev, srv, id, fp) in [
            (
                "BHS5kLb7nQkN4D8hMNbYs7uAj1yVHShh5l/YKIZowo8cN4CK6Q/9X5jb0mQruk/RB4AenmNB9jSKv00T9J8EneA=",
                "BLVfJ2NrOBByBZhfS4UtEQU3fLhnzYbWdp3ZVEQPfKtTGXzXIpKqxCVwpRl3X++4OJQJoemybZ/cmkLU5fY2SZE=",
                "6ae8cd16-67a7-4840-8d37-33d9aab6ea51",
                "80201993",
            ),
            (
                "BPDPY3g+kQSkTu915tVjxhGAhtPH9ylWieXmqrS/cNHlC3/BNx3fWztUmLjDEToacSn0zMe997nwsNGV4ZYKemM=",
                "BKoVSkmONQ0BCF+C9VxZZnB8O8acL4rwQY/GaT+Xl/BctT1zqoVcvq3LjsjK/ID/ec8ksLD/FIKNBK6UtA7/trY=",
                "615c9552-6e89-49ca-bc37-9108dc8553d8",
                "07506106",
            ),
            (
                "BAGIMXlGQ8zqT725/gxdVv4tePvhj+Z81j8yT+tQMEU/vSUfaIg4njq7d7vsJOtWvpd/PEcuj6ciNbvxY7FlFSw=",
                "BI1sBBmFYGQG7iI9+2I7WpGzqD40CIZop1eR1vMO/QkVxzMH2wbdPNDRAkiEF7J0g8lndTYClrITYgTo2hrXDUM=",
                "9cbe9cbe-ab94-49be-80af-2f6333d64af2",
                "38681033",
            ),
        ] {
            let dev = PublicKey::from_base64(dev).unwrap();
            let srv = PublicKey::from_base64(srv).unwrap();
            assert_eq!(fingerprint_v3(&dev, id, &srv), fp);
        }
    }

    #[test]
    fn minimal_x_strips_leading_zeros() {
        // Search a small range of scalars for a key whose X starts with 0x00.
        let key = (1u8..=255)
            .flat_map(|a| (1u8..=255).map(move |b| [a, b]))
            .find_map(|[a, b]| {
                let mut d = [0u8; 32];
                d[30] = a;
                d[31] = b;
                let public = crate::PrivateKey::from_scalar_bytes(&d)
                    .unwrap()
                    .public_key();
                (public.x_bytes()[0] == 0).then_some(public)
            })
            .expect("about 1 in 256 keys has X starting with 0x00");
        let x = key.x_bytes();
        let strip = x.iter().take_while(|b| **b == 0).count();
        assert_eq!(minimal_x(&key), x[strip..].to_vec());
        assert!(minimal_x(&key).len() < 32);
    }
}
