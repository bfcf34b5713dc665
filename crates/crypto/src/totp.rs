//! The proximity-check TOTP (`spec/powerauth-offline.md` §6.6): RFC 6238 with HMAC-SHA256.
//!
//! `T = floor(t / step)`, `h = HMAC(seed, BE64(T))`, `o = h[31] & 0x0F`,
//! `code = (BE32(h[o..o+4]) & 0x7FFFFFFF) mod 10^digits`, printed as exactly `digits` digits.

use super::CryptoError;
use super::signature::hmac;

/// Smallest accepted number of digits.
pub const MIN_DIGITS: u32 = 6;
/// Largest accepted number of digits.
pub const MAX_DIGITS: u32 = 10;

/// The TOTP for `unix_seconds` with raw `seed` bytes, `step_seconds` > 0 and 6..=10 `digits`.
pub fn totp(
    seed: &[u8],
    unix_seconds: u64,
    step_seconds: u64,
    digits: u32,
) -> Result<String, CryptoError> {
    if step_seconds == 0 {
        return Err(CryptoError::InvalidTotpParameters(
            "step length must be at least 1 second",
        ));
    }
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits) {
        return Err(CryptoError::InvalidTotpParameters("digits must be 6..=10"));
    }
    let step = unix_seconds / step_seconds;
    let h = hmac(seed, &step.to_be_bytes());
    let o = usize::from(h[31] & 0x0F);
    let value = u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]) & 0x7FFF_FFFF;
    let code = u64::from(value) % 10u64.pow(digits);
    Ok(format!("{code:0width$}", width = digits as usize))
}

/// The TOTPs of the current step and `step_count` previous steps, current first (§8.1: times
/// `now − s·step` for s = 0..=step_count). Steps before the Unix epoch are left out.
pub fn totp_candidates(
    seed: &[u8],
    now_unix_seconds: u64,
    step_seconds: u64,
    step_count: u32,
    digits: u32,
) -> Result<Vec<String>, CryptoError> {
    (0..=u64::from(step_count))
        .map_while(|s| {
            s.checked_mul(step_seconds)
                .and_then(|back| now_unix_seconds.checked_sub(back))
        })
        .map(|t| totp(seed, t, step_seconds, digits))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_SEED: &[u8] = b"12345678901234567890123456789012";

    #[test]
    fn rfc6238_sha256_values() {
        for (t, code) in [
            (59, "46119246"),
            (1_111_111_109, "68084774"),
            (1_111_111_111, "67062674"),
            (1_234_567_890, "91819424"),
            (2_000_000_000, "90698825"),
            (20_000_000_000, "77737706"),
        ] {
            assert_eq!(totp(RFC_SEED, t, 30, 8).unwrap(), code, "t={t}");
        }
    }

    #[test]
    fn leading_zero_is_kept() {
        // 2023-04-27T01:26:29Z
        assert_eq!(
            totp(b"12345678901234567890", 1_682_558_789, 30, 8).unwrap(),
            "01760428"
        );
    }

    #[test]
    fn parameters_are_checked() {
        assert!(totp(RFC_SEED, 0, 0, 8).is_err());
        assert!(totp(RFC_SEED, 0, 30, 5).is_err());
        assert!(totp(RFC_SEED, 0, 30, 11).is_err());
        assert_eq!(totp(RFC_SEED, 59, 30, 10).unwrap().len(), 10);
    }

    #[test]
    fn candidates_current_first() {
        let c = totp_candidates(RFC_SEED, 1_111_111_111, 30, 2, 8).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0], "67062674");
        assert_eq!(c[1], totp(RFC_SEED, 1_111_111_081, 30, 8).unwrap());
        assert_eq!(
            totp_candidates(RFC_SEED, 40, 30, 5, 8).unwrap().len(),
            2,
            "stops at the epoch"
        );
    }
}
