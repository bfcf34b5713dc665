//! QR codes for `offlineData` payloads: the terminal (Unicode half blocks), PNG and SVG.
//!
//! Encoding follows Web Flow (`spec/powerauth-offline.md` §5): one **byte-mode** segment holding the
//! UTF-8 bytes of the payload, no ECI header, built with the `qrcode` crate's encoder
//! (`Bits::push_byte_data` at a chosen `Version`, then `QrCode::with_bits`).
//!
//! **Error-correction level.** A personalized Web Flow payload with a proximity TOTP is about
//! 250–400 bytes (operation id 36, title and message, operation data, flags, TOTP 8, nonce 24, key
//! indicator, Base64 DER signature ~96, seven or eight line breaks). We take the highest level, in the
//! order H → Q → M → L, whose smallest fitting version is at most [`MAX_SCANNABLE_VERSION`] (25,
//! 117×117 modules). Up to version 25 a phone camera reads the code off a laptop screen or a terminal
//! at ordinary distance; beyond that the modules get too small to resolve reliably, so a larger
//! version is worse than a lower error-correction level (screens, unlike paper, are not smudged or
//! torn, which is what H's 30 % recovery is for). A 300-byte payload lands at H, version 17–18. When
//! even L needs more than version 25, the smallest L code up to version 40 is used and a warning is
//! given; beyond version 40 (2953 bytes at L) the payload is refused.
//!
//! Rendering: every output keeps a 4-module quiet zone. PNG is 8-bit greyscale (0 dark, 255 light)
//! with [`DEFAULT_MODULE_PIXELS`] pixels per module (at least [`MIN_MODULE_PIXELS`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use qrcode::bits::Bits;
use qrcode::render::{svg, unicode};
use qrcode::{Color, EcLevel, QrCode, Version};

/// The largest version we consider comfortably phone-scannable (see the module documentation).
pub const MAX_SCANNABLE_VERSION: i16 = 25;
/// The largest QR version there is.
pub const MAX_VERSION: i16 = 40;
/// Modules of light margin on every side.
pub const QUIET_ZONE: u32 = 4;
/// Smallest PNG scale accepted.
pub const MIN_MODULE_PIXELS: u32 = 4;
/// Default PNG scale.
pub const DEFAULT_MODULE_PIXELS: u32 = 8;

/// Why a QR code could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum QrError {
    /// The payload does not fit into a version-40 code even at error-correction level L.
    #[error(
        "the payload is {bytes} bytes and does not fit into a QR code (at most 2953 bytes at \
         version 40, level L); shorten the title, message or operation data"
    )]
    TooLong {
        /// UTF-8 length of the payload.
        bytes: usize,
    },
    /// PNG scale below [`MIN_MODULE_PIXELS`].
    #[error("--scale must be at least {MIN_MODULE_PIXELS} pixels per module, got {0}")]
    ScaleTooSmall(u32),
    /// The QR library refused the data (should not happen once a version was chosen).
    #[error("QR encoder error: {0}")]
    Encoder(qrcode::types::QrError),
    /// `--activation-code` is not a valid code (or `code#signature`).
    #[error("invalid activation code: {0}")]
    ActivationCode(crate::crypto::CryptoError),
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
    /// A file could not be written, or stdin could not be read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One encoded QR code and the choice made for it.
#[derive(Clone)]
pub struct Qr {
    code: QrCode,
}

impl std::fmt::Debug for Qr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qr")
            .field("version", &self.version())
            .field("ec_level", &self.ec_level())
            .finish()
    }
}

impl Qr {
    /// Encodes `text` as one byte-mode segment, choosing the error-correction level and version as
    /// the module documentation says.
    pub fn encode(text: &str) -> Result<Self, QrError> {
        let data = text.as_bytes();
        let choice = [EcLevel::H, EcLevel::Q, EcLevel::M, EcLevel::L]
            .into_iter()
            .find_map(|ec| smallest_version(data, ec, MAX_SCANNABLE_VERSION).map(|v| (v, ec)))
            .or_else(|| smallest_version(data, EcLevel::L, MAX_VERSION).map(|v| (v, EcLevel::L)))
            .ok_or(QrError::TooLong { bytes: data.len() })?;
        Self::encode_at(text, choice.0, choice.1)
    }

    /// Encodes `text` as one byte-mode segment at exactly `version` and `ec_level`.
    pub fn encode_at(text: &str, version: i16, ec_level: EcLevel) -> Result<Self, QrError> {
        let bits = byte_mode_bits(text.as_bytes(), version, ec_level).map_err(QrError::Encoder)?;
        let code = QrCode::with_bits(bits, ec_level).map_err(QrError::Encoder)?;
        Ok(Self { code })
    }

    /// The version, 1..=40.
    pub fn version(&self) -> i16 {
        match self.code.version() {
            Version::Normal(v) | Version::Micro(v) => v,
        }
    }

    /// The error-correction level.
    pub fn ec_level(&self) -> EcLevel {
        self.code.error_correction_level()
    }

    /// Modules per side, without the quiet zone.
    pub fn modules(&self) -> usize {
        self.code.width()
    }

    /// Whether the version is above [`MAX_SCANNABLE_VERSION`].
    pub fn is_oversized(&self) -> bool {
        self.version() > MAX_SCANNABLE_VERSION
    }

    /// Terminal rendering with Unicode half blocks (two modules per character cell), quiet zone
    /// included. `dark_background` draws the light modules as blocks, which is what a terminal with
    /// light text on a dark background needs for the code to show dark-on-light.
    pub fn to_terminal(&self, dark_background: bool) -> String {
        let mut renderer = self.code.render::<unicode::Dense1x2>();
        renderer.quiet_zone(true);
        if dark_background {
            renderer
                .dark_color(unicode::Dense1x2::Light)
                .light_color(unicode::Dense1x2::Dark);
        }
        renderer.build()
    }

    /// An SVG document (black on white), quiet zone included.
    pub fn to_svg(&self) -> String {
        self.code
            .render::<svg::Color<'_>>()
            .quiet_zone(true)
            .min_dimensions(256, 256)
            .build()
    }

    /// The code as 8-bit greyscale pixels, row-major: `(side, pixels)` with `side × side` pixels,
    /// 0 = dark, 255 = light, `module_pixels` pixels per module, quiet zone included.
    pub fn to_greyscale(&self, module_pixels: u32) -> Result<(u32, Vec<u8>), QrError> {
        if module_pixels < MIN_MODULE_PIXELS {
            return Err(QrError::ScaleTooSmall(module_pixels));
        }
        let modules = self.modules();
        let colors = self.code.to_colors();
        let scale = module_pixels as usize;
        let quiet = QUIET_ZONE as usize;
        let side = (modules + 2 * quiet) * scale;
        let mut pixels = vec![255u8; side * side];
        for (index, color) in colors.iter().enumerate() {
            if *color != Color::Dark {
                continue;
            }
            let (mx, my) = (index % modules + quiet, index / modules + quiet);
            for y in my * scale..(my + 1) * scale {
                pixels[y * side + mx * scale..y * side + (mx + 1) * scale].fill(0);
            }
        }
        let side = u32::try_from(side).expect("a version-40 code at any sane scale fits in u32");
        Ok((side, pixels))
    }

    /// A PNG file (8-bit greyscale) of [`Qr::to_greyscale`].
    pub fn to_png(&self, module_pixels: u32) -> Result<Vec<u8>, QrError> {
        let (side, pixels) = self.to_greyscale(module_pixels)?;
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, side, side);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
        Ok(out)
    }
}

/// The bits of one byte-mode segment plus terminator at `version`, or the encoder's refusal.
fn byte_mode_bits(
    data: &[u8],
    version: i16,
    ec_level: EcLevel,
) -> Result<Bits, qrcode::types::QrError> {
    let mut bits = Bits::new(Version::Normal(version));
    bits.push_byte_data(data)?;
    bits.push_terminator(ec_level)?;
    Ok(bits)
}

fn smallest_version(data: &[u8], ec_level: EcLevel, max: i16) -> Option<i16> {
    (1..=max).find(|v| byte_mode_bits(data, *v, ec_level).is_ok())
}

/// The error-correction level as its letter.
pub fn ec_letter(level: EcLevel) -> char {
    match level {
        EcLevel::L => 'L',
        EcLevel::M => 'M',
        EcLevel::Q => 'Q',
        EcLevel::H => 'H',
    }
}

/// Arguments of `offline-token qr`.
#[derive(Debug, Args)]
pub struct QrArgs {
    /// Write a PNG image (8-bit greyscale) to FILE instead of drawing in the terminal.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Write an SVG image to FILE instead of drawing in the terminal.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Pixels per module in the PNG (at least 4).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MODULE_PIXELS)]
    pub scale: u32,
    /// The terminal has dark text on a light background (default: light text on dark).
    #[arg(long)]
    pub light_background: bool,
    /// The offlineData text; read from stdin when absent (one trailing newline is ignored).
    #[arg(long, value_name = "TEXT", conflicts_with = "activation_code")]
    pub offline_data: Option<String>,
    /// Show an activation code instead: CODE or CODE#SIGNATURE (the signature Base64 DER, as
    /// activation/init returns it). The code is checked (format, CRC-16) and the QR holds exactly
    /// the payload the mobile SDK scans: `code` or `code#signature`.
    #[arg(long, value_name = "CODE[#SIGNATURE]")]
    pub activation_code: Option<String>,
}

/// The QR text for `--activation-code`: the code (checked) and its optional signature, rebuilt
/// as the SDK's scan payload (`activation_code::qr_payload`).
///
/// # Errors
/// [`QrError::ActivationCode`] when the code or signature is malformed.
pub fn activation_code_payload(text: &str) -> Result<String, QrError> {
    let (code, signature) =
        crate::crypto::activation_code::ActivationCode::parse_qr_payload(text.trim())
            .map_err(QrError::ActivationCode)?;
    Ok(code.qr_payload(signature.as_ref()))
}

/// Runs `offline-token qr`: draws the offlineData payload (or with `--activation-code` the activation
/// code) in the terminal (stdout), or writes the files asked for.
/// A summary line (version, level, size) goes to stderr.
pub fn run(args: QrArgs) -> Result<(), QrError> {
    let text = match (args.offline_data, args.activation_code) {
        (_, Some(code)) => activation_code_payload(&code)?,
        (Some(text), None) => text,
        (None, None) => crate::input::read_stdin().map_err(|source| QrError::Io {
            what: "reading the payload from stdin".to_owned(),
            source,
        })?,
    };
    let qr = Qr::encode(&text)?;
    eprintln!(
        "QR version {} ({}×{} modules), error correction {}, {} bytes, byte mode",
        qr.version(),
        qr.modules(),
        qr.modules(),
        ec_letter(qr.ec_level()),
        text.len()
    );
    if qr.is_oversized() {
        eprintln!(
            "warning: above version {MAX_SCANNABLE_VERSION}; phones may struggle to scan it. \
             Shorten the payload if you can."
        );
    }
    if let Some(path) = &args.png {
        write_file(path, &qr.to_png(args.scale)?)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        write_file(path, qr.to_svg().as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    if args.png.is_none() && args.svg.is_none() {
        let mut out = std::io::stdout().lock();
        let io = |source| QrError::Io {
            what: "writing to stdout".to_owned(),
            source,
        };
        out.write_all(qr.to_terminal(!args.light_background).as_bytes())
            .map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), QrError> {
    std::fs::write(path, bytes).map_err(|source| QrError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_gets_level_h() {
        let qr = Qr::encode("hello").unwrap();
        assert_eq!(qr.ec_level(), EcLevel::H);
        assert_eq!(qr.version(), 1);
        assert!(!qr.is_oversized());
    }

    #[test]
    fn level_drops_as_the_payload_grows() {
        // Version 25 holds 535 bytes at H, 715 at Q, 997 at M, 1273 at L (byte mode).
        let at = |n: usize| {
            let qr = Qr::encode(&"x".repeat(n)).unwrap();
            (ec_letter(qr.ec_level()), qr.version())
        };
        assert_eq!(at(535), ('H', 25));
        assert_eq!(at(536).0, 'Q');
        assert_eq!(at(716).0, 'M');
        assert_eq!(at(998).0, 'L');
        let (level, version) = at(1274);
        assert_eq!(level, 'L');
        assert!(version > MAX_SCANNABLE_VERSION);
        assert_eq!(at(2953), ('L', 40));
        assert!(matches!(
            Qr::encode(&"x".repeat(2954)),
            Err(QrError::TooLong { bytes: 2954 })
        ));
    }

    #[test]
    fn greyscale_has_a_quiet_zone_and_scale() {
        let qr = Qr::encode("hello").unwrap();
        let (side, pixels) = qr.to_greyscale(4).unwrap();
        assert_eq!(side as usize, (21 + 8) * 4);
        assert_eq!(pixels.len(), (side * side) as usize);
        // The quiet zone (first 16 rows) is all light; the finder pattern's corner is dark.
        assert!(pixels[..16 * side as usize].iter().all(|p| *p == 255));
        assert_eq!(pixels[16 * side as usize + 16], 0);
        assert!(matches!(qr.to_greyscale(3), Err(QrError::ScaleTooSmall(3))));
    }

    #[test]
    fn terminal_and_svg_render() {
        let qr = Qr::encode("hello").unwrap();
        let text = qr.to_terminal(true);
        // 21 modules + 2×4 quiet zone = 29 columns; rows are packed two per line.
        assert!(text.lines().all(|l| l.chars().count() == 29), "{text}");
        assert_eq!(text.lines().count(), 15);
        assert_ne!(text, qr.to_terminal(false));
        assert!(qr.to_svg().starts_with("<?xml"));
    }
}
