//! Scans every file under a directory for a byte pattern in the forms a careless program would write it:
//! raw, lower- and upper-case hex, and standard or URL-safe Base64 at any of the three byte alignments.
//! Used to check that no plaintext secret ever lands on disk.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// One place the pattern was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub file: PathBuf,
    pub offset: usize,
    /// `raw`, `hex`, `HEX`, `base64` or `base64url`.
    pub form: &'static str,
}

/// The encodings of `needle` to look for, each with its name.
pub fn forms(needle: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![
        ("raw", needle.to_vec()),
        ("hex", hex::encode(needle).into_bytes()),
        ("HEX", hex::encode_upper(needle).into_bytes()),
    ];
    for shift in 0..3usize {
        // Encode `needle` as if it started `shift` bytes into a Base64 group, and keep only the
        // characters whose 6 bits all come from `needle`.
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(needle);
        let first = (8 * shift).div_ceil(6);
        let end = (8 * (shift + needle.len())) / 6;
        for (name, engine) in [
            ("base64", &STANDARD_NO_PAD),
            ("base64url", &URL_SAFE_NO_PAD),
        ] {
            let text = engine.encode(&padded);
            if first < end {
                out.push((name, text.as_bytes()[first..end].to_vec()));
            }
        }
    }
    out
}

/// Every occurrence of `needle` (in any of its [`forms`]) in every file under `dir`.
pub fn scan_dir(dir: &Path, needle: &[u8]) -> std::io::Result<Vec<Hit>> {
    let forms = forms(needle);
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
            continue;
        }
        let bytes = std::fs::read(&path)?;
        hits.extend(scan_in(&path, &bytes, &forms));
    }
    Ok(hits)
}

/// Every occurrence of `needle` (in any of its [`forms`]) in `bytes`, which came from `source`.
pub fn scan_bytes(source: &Path, bytes: &[u8], needle: &[u8]) -> Vec<Hit> {
    scan_in(source, bytes, &forms(needle))
}

fn scan_in(source: &Path, bytes: &[u8], forms: &[(&'static str, Vec<u8>)]) -> Vec<Hit> {
    let mut hits = Vec::new();
    for (form, pattern) in forms {
        if pattern.is_empty() || pattern.len() > bytes.len() {
            continue;
        }
        for (offset, window) in bytes.windows(pattern.len()).enumerate() {
            if window == pattern.as_slice() {
                hits.push(Hit {
                    file: source.to_path_buf(),
                    offset,
                    form,
                });
            }
        }
    }
    hits
}
