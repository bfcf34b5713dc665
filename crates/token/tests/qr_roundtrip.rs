//! `offline-signer qr --png` round trip: the PNG the binary writes decodes, with an independent decoder
//! (rqrr), back to exactly the `offlineData` bytes, including a full Web Flow payload with a proximity
//! TOTP and non-ASCII text.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use offline_signer_crypto::{KeyIndicator, PrivateKey, UnsignedOfflineData, ecdsa};

const BIN: &str = env!("CARGO_BIN_EXE_offline-token");

fn signed_payload(data: &str, totp: Option<&str>) -> String {
    let key = PrivateKey::generate(&mut rand::rngs::OsRng);
    let unsigned = UnsignedOfflineData::new(
        data,
        totp,
        "AD8bOO0Df73kNaIGb3Vmpg==",
        KeyIndicator::Personalized,
    );
    let sig = ecdsa::sign(&key, unsigned.signed_bytes());
    unsigned.finish(&sig)
}

/// Runs `qr --png` and returns the decoded bytes and the summary line from stderr.
fn png_round_trip(payload: &str, extra: &[&str]) -> (Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("qr.png");
    let out = Command::new(BIN)
        .args(["qr", "--png"])
        .arg(&png_path)
        .args(["--offline-data", payload])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "qr failed: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "no terminal drawing when --png is given"
    );
    (decode_png(&png_path), stderr)
}

fn decode_png(path: &Path) -> Vec<u8> {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "exactly one QR code in the image");
    let mut bytes = Vec::new();
    grids[0].decode_to(&mut bytes).unwrap();
    bytes
}

#[test]
fn web_flow_payload_with_totp_and_non_ascii_round_trips() {
    let data = "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPlatba 100 Kč\nPotvrďte prosím platbu příjemci Žluťoučký kůň\nA1*A100CZK*ICZ2730300000001165254011,RZBCCZPP*RFaktura 2024/117*D20241231*NDěkujeme\\nza platbu\nBF";
    let payload = signed_payload(data, Some("62793923"));
    assert!(
        payload.split('\n').count() == 8,
        "a Web Flow QR with a TOTP has 8 lines"
    );
    let (decoded, summary) = png_round_trip(&payload, &[]);
    assert_eq!(decoded, payload.as_bytes());
    assert!(summary.contains("error correction H"), "{summary}");
    assert!(summary.contains("byte mode"), "{summary}");
}

#[test]
fn long_payload_drops_to_a_lower_level_and_still_round_trips() {
    let message = "Dlouhá zpráva ".repeat(40);
    let data = format!("op-1\nTitle\n{message}\nA1*T{}\n", "x".repeat(100));
    let payload = signed_payload(&data, Some("01234567"));
    let (decoded, summary) = png_round_trip(&payload, &["--scale", "4"]);
    assert_eq!(decoded, payload.as_bytes());
    assert!(!summary.contains("error correction H"), "{summary}");
}

#[test]
fn minimal_scale_round_trips() {
    let payload = signed_payload("op\nT\nM\nA0\n", None);
    let (decoded, _) = png_round_trip(&payload, &["--scale", "4"]);
    assert_eq!(decoded, payload.as_bytes());
}

#[test]
fn too_long_payload_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let png_path = dir.path().join("qr.png");
    let out = Command::new(BIN)
        .args(["qr", "--png"])
        .arg(&png_path)
        .args(["--offline-data", &"x".repeat(3000)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not fit into a QR code"), "{stderr}");
    assert!(!png_path.exists());
}

#[test]
fn scale_below_four_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["qr", "--scale", "3", "--png"])
        .arg(dir.path().join("qr.png"))
        .args(["--offline-data", "hello"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 4"));
}

#[test]
fn terminal_and_svg_output_from_stdin() {
    let payload = signed_payload("op\nT\nM\nA0\n", None);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("qr.svg");
    let mut child = Command::new(BIN)
        .args(["qr", "--svg"])
        .arg(&svg)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        format!("{payload}\n").as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("<svg"));

    let out = Command::new(BIN)
        .args(["qr", "--offline-data", &payload])
        .output()
        .unwrap();
    assert!(out.status.success());
    let drawing = String::from_utf8(out.stdout).unwrap();
    let widths: Vec<usize> = drawing.lines().map(|l| l.chars().count()).collect();
    assert!(widths.len() > 10);
    assert!(
        widths.iter().all(|w| *w == widths[0]),
        "a square drawing: {widths:?}"
    );
    assert!(drawing.contains('█') || drawing.contains('▀') || drawing.contains('▄'));
}

/// The terminal drawing is a real QR code too: read the half blocks back into pixels and decode.
#[test]
fn terminal_drawing_decodes() {
    let payload = signed_payload(
        "5ff1b1ed-a3cc-45a3-8ab0-ed60950312b6\nPlatba 100 Kč\nPotvrďte platbu\nA1*A100CZK\nB",
        Some("12345678"),
    );
    for (flag, block_is_light) in [(None, true), (Some("--light-background"), false)] {
        let mut cmd = Command::new(BIN);
        cmd.args(["qr", "--offline-data", &payload]);
        if let Some(flag) = flag {
            cmd.arg(flag);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let drawing = String::from_utf8(out.stdout).unwrap();
        let rows: Vec<Vec<char>> = drawing.lines().map(|l| l.chars().collect()).collect();
        let width = rows[0].len();
        let scale = 4;
        let (w, h) = (width * scale, rows.len() * 2 * scale);
        let mut pixels = vec![255u8; w * h];
        for (row, chars) in rows.iter().enumerate() {
            for (col, c) in chars.iter().enumerate() {
                let (top, bottom) = match c {
                    ' ' => (false, false),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    '█' => (true, true),
                    other => panic!("unexpected character {other:?}"),
                };
                for (half, block) in [(0, top), (1, bottom)] {
                    let dark = block != block_is_light;
                    if dark {
                        for y in 0..scale {
                            let py = (row * 2 + half) * scale + y;
                            pixels[py * w + col * scale..py * w + (col + 1) * scale].fill(0);
                        }
                    }
                }
            }
        }
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| pixels[y * w + x]);
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "{flag:?}");
        let mut bytes = Vec::new();
        grids[0].decode_to(&mut bytes).unwrap();
        assert_eq!(bytes, payload.as_bytes(), "{flag:?}");
    }
}
