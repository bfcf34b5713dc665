//! The `offline-token` token subcommands: `activate`, `sign`, `status`.
//!
//! `activate --code` is activation by activation code (protocol 3.3, [`crate::activation`]);
//! `activate --user` is the `activation/register` test path that needs no code.
//!
//! Output discipline: what a script consumes goes to **stdout** (the JSON object of `--json`, one
//! value of `--field`, or the code alone), everything meant for a person (the operation, the flags,
//! the fingerprint, hints) goes to **stderr**. So `token sign --json` prints pure JSON on stdout.
//! The state file is saved before a code is printed, as a phone persists its counter before it shows
//! a code.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use secrecy::SecretString;

use super::activation::{CodeActivation, DeviceInfo, OtpPlacement};
use super::client::{Client, Credentials};
use super::{Activation, SignOptions, SignedOperation, Token, TokenError, TokenState};
use crate::crypto::ComponentLength;
use crate::crypto::offline_data::DEFAULT_URI_ID;

/// A software mobile token (test double of a phone app).
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Activate a new token, with an activation code (protocol 3.3) or, as a test path, by register.
    ///
    /// With --code the tool plays the mobile SDK and the enrollment server: mobileSdkConfig (from
    /// application/detail or --sdk-config), activation-code signature check, keystore/create,
    /// ECIES layers 2 and 1, ecies/decryptor, activation/prepare, key derivation, save the state,
    /// then activation/commit unless the server committed at key exchange. Without --code, --user
    /// registers a fresh device key directly (activation/register, not PowerAuth's flow).
    ///
    /// Integration credentials come from OFFLINE_SIGNER_CLIENT_TOKEN and OFFLINE_SIGNER_CLIENT_SECRET
    /// (as in credentials.env). The state file must not exist yet; it is created with mode 0600.
    Activate(ActivateArgs),
    /// Check a QR payload (offlineData), show the operation and print the code to type.
    ///
    /// The payload comes from --offline-data or stdin (one trailing newline is ignored). A payload
    /// whose ECDSA signature does not verify is refused. Every code shown advances the counter.
    Sign(SignArgs),
    /// Show the token's activation, server, counter position and fingerprint.
    Status(StatusArgs),
}

/// Arguments of `token activate`.
#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// Base URL of the service, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The application id to activate in.
    #[arg(long, value_name = "ID")]
    pub application: String,
    /// Test path without a code: the user id to register through activation/register.
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "code",
        conflicts_with = "code"
    )]
    pub user: Option<String>,
    /// The activation code from activation/init (XXXXX-XXXXX-XXXXX-XXXXX), or the scanned QR
    /// payload CODE#SIGNATURE.
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// The options of activation by code.
    #[command(flatten)]
    pub by_code: CodeArgs,
    /// The state file to create (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Failed attempts before the server blocks the activation (server default when absent).
    #[arg(long, value_name = "N")]
    pub max_failed_attempts: Option<u32>,
}

/// The options of `token activate` that belong to activation by code (ignored by `--user`, the test
/// path). They say nothing of `--code`: one of `--code` and `--user` is always given, and clap
/// counts a `requires = "code"` as met whenever `--user`, which conflicts with `--code`, is there.
#[derive(Debug, Args)]
pub struct CodeArgs {
    /// The activation signature (Base64 DER) from activation/init; checked with the master public
    /// key before anything is sent. Without it (and without #SIGNATURE in --code) the code is
    /// accepted unchecked, as the SDK does.
    #[arg(long, value_name = "SIG")]
    pub code_signature: Option<String>,
    /// The application's mobileSdkConfig string; when absent it is read from application/detail
    /// (versions[]) with the integration credentials, as a bank's set-up would.
    #[arg(
        long,
        value_name = "STRING",
        env = "OFFLINE_TOKEN_SDK_CONFIG",
        hide_env_values = true
    )]
    pub sdk_config: Option<String>,
    /// The activation OTP, when activation/init was given one.
    #[arg(
        long,
        value_name = "OTP",
        env = "OFFLINE_TOKEN_ACTIVATION_OTP",
        hide_env_values = true
    )]
    pub otp: Option<String>,
    /// Where the OTP goes: `commit` (activation/commit, commit phase ON_COMMIT) or `key-exchange`
    /// (inside layer 2 to activation/prepare, commit phase ON_KEY_EXCHANGE).
    #[arg(
        long,
        value_enum,
        value_name = "WHERE",
        default_value = "commit",
        requires = "otp"
    )]
    pub otp_at: OtpAt,
    /// The activationName the device sends in layer 2.
    #[arg(long, value_name = "NAME", default_value = "offline-token")]
    pub activation_name: String,
    /// The platform the device sends in layer 2 (e.g. ios, android).
    #[arg(long, value_name = "NAME", default_value = "unknown")]
    pub platform: String,
    /// The deviceInfo the device sends in layer 2.
    #[arg(long, value_name = "TEXT", default_value = "offline-token simulator")]
    pub device_info: String,
}

impl CodeArgs {
    /// The activation by `code` in `application_id` these options describe.
    fn activation(self, application_id: String, code: String) -> CodeActivation {
        CodeActivation {
            application_id,
            code,
            code_signature: self.code_signature,
            sdk_config: self.sdk_config.map(SecretString::from),
            activation_otp: self.otp.map(SecretString::from),
            otp_placement: match self.otp_at {
                OtpAt::Commit => OtpPlacement::Commit,
                OtpAt::KeyExchange => OtpPlacement::KeyExchange,
            },
            device: DeviceInfo {
                activation_name: self.activation_name,
                platform: self.platform,
                device_info: self.device_info,
            },
        }
    }
}

/// Where `activate --otp` sends the activation OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtpAt {
    /// With activation/commit (commit phase ON_COMMIT).
    Commit,
    /// Inside layer 2 to activation/prepare (commit phase ON_KEY_EXCHANGE).
    KeyExchange,
}

/// Arguments of `token sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The token's state file.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Approve with biometry (possession + biometry) instead of the PIN; needs the B flag.
    #[arg(long)]
    pub biometry: bool,
    /// Digits per code component, 4..=8.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u8).range(4..=8))]
    pub length: u8,
    /// The offlineData text; read from stdin when absent.
    #[arg(long, value_name = "TEXT")]
    pub offline_data: Option<String>,
    /// The uriId of the normalized data (must match the web application's).
    #[arg(long, value_name = "ID", default_value = DEFAULT_URI_ID)]
    pub uri_id: String,
    /// Print a JSON object (code, data, nonce, signatureType, allowBiometry, proximity, …) on stdout.
    #[arg(long, conflicts_with = "field")]
    pub json: bool,
    /// Print only this value on stdout (for shell scripts).
    #[arg(long, value_enum, value_name = "NAME")]
    pub field: Option<Field>,
}

/// One value `token sign --field` can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Field {
    /// The code to type.
    Code,
    /// The `data` for verify (no TOTP).
    Data,
    /// The nonce.
    Nonce,
    /// `POSSESSION_KNOWLEDGE` or `POSSESSION_BIOMETRY`.
    SignatureType,
    /// `true` or `false`: whether verify needs allowBiometry.
    AllowBiometry,
    /// The proximity TOTP (empty when the QR had none).
    Totp,
}

/// Arguments of `token status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The token's state file.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Also ask the server: activation/status with a random challenge; the encrypted status blob
    /// is decrypted with the token's transport key and the counter check (PowerAuth §6.3) is run.
    /// Prints one JSON object on stdout (status, counter sync result, blob fields); adopts and saves
    /// the server's counter when the server is ahead. Uses the credential variables.
    #[arg(long)]
    pub remote: bool,
}

/// Runs one `token` subcommand.
pub fn run(command: TokenCommand) -> Result<(), TokenError> {
    match command {
        TokenCommand::Activate(args) => activate(args),
        TokenCommand::Sign(args) => sign(args),
        TokenCommand::Status(args) => status(args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, TokenError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn activate(args: ActivateArgs) -> Result<(), TokenError> {
    if args.state.exists() {
        return Err(super::StateFileError::AlreadyExists(args.state).into());
    }
    let credentials = Credentials::from_env();
    if credentials.is_none() {
        eprintln!(
            "note: {} / {} are not set; calling the service without credentials",
            super::client::CLIENT_TOKEN_ENV,
            super::client::CLIENT_SECRET_ENV
        );
    }
    let client = Client::new(&args.server, credentials)?;
    let path = args.state;
    let persist = |state: &TokenState| state.create(&path).map_err(TokenError::from);
    let token = match (args.code, args.user) {
        (Some(code), _) => {
            let activation = args.by_code.activation(args.application, code);
            runtime()?.block_on(Token::activate_with_code(&client, &activation, persist))?
        }
        (None, Some(user_id)) => {
            let activation = Activation {
                application_id: args.application,
                user_id,
                max_failed_attempts: args.max_failed_attempts,
            };
            runtime()?.block_on(Token::activate(&client, &activation, persist))?
        }
        (None, None) => {
            return Err(TokenError::Io(std::io::Error::other(
                "give --code CODE (activation by code) or --user ID (register test path)",
            )));
        }
    };
    let state = token.state();
    eprintln!("Token activated.");
    eprintln!("  activation  {}", state.activation_id);
    eprintln!(
        "  fingerprint {} (matches the server's)",
        state.fingerprint()
    );
    eprintln!("  state       {} (mode 0600)", path.display());
    println!("{}", state.activation_id);
    Ok(())
}

fn sign(args: SignArgs) -> Result<(), TokenError> {
    let offline_data = match args.offline_data {
        Some(text) => text,
        None => crate::input::read_stdin()?,
    };
    let state = TokenState::load(&args.state)?;
    let mut token = Token::new(state);
    let options = SignOptions {
        biometry: args.biometry,
        length: ComponentLength::new(i64::from(args.length)).map_err(TokenError::InvalidLength)?,
        uri_id: args.uri_id,
    };
    let signed = token.sign(&offline_data, &options)?;
    // The counter moved: persist it before the code leaves the token.
    token.state().save(&args.state)?;
    describe(&signed);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &signed).map_err(std::io::Error::other)?;
        writeln!(out)?;
    } else if let Some(field) = args.field {
        writeln!(out, "{}", field_value(&signed, field))?;
    } else {
        writeln!(out, "{}", signed.code)?;
    }
    out.flush()?;
    Ok(())
}

fn field_value(signed: &SignedOperation, field: Field) -> String {
    match field {
        Field::Code => signed.code.clone(),
        Field::Data => signed.data.clone(),
        Field::Nonce => signed.nonce.clone(),
        Field::SignatureType => signed.signature_type.to_owned(),
        Field::AllowBiometry => signed.allow_biometry.to_string(),
        Field::Totp => signed
            .proximity
            .as_ref()
            .map(|p| p.totp.clone())
            .unwrap_or_default(),
    }
}

/// The human display, on stderr.
fn describe(signed: &SignedOperation) {
    eprintln!(
        "QR signature OK ({} key).",
        if signed.key == "master" {
            "application master"
        } else {
            "activation's server"
        }
    );
    eprint!("{}", signed.operation);
    if let Some(p) = &signed.proximity {
        eprintln!("  Proximity  TOTP {} (signed into the code)", p.totp);
    }
    eprintln!(
        "Approved with {} ({}); code {} of this token.",
        if signed.signature_type == "POSSESSION_BIOMETRY" {
            "biometry"
        } else {
            "PIN"
        },
        signed.signature_type,
        signed.counter
    );
    if signed.component_length == 8 {
        eprintln!("Code to type: {}", signed.code);
    }
}

fn status(args: StatusArgs) -> Result<(), TokenError> {
    let state = TokenState::load(&args.state)?;
    if args.remote && state.transport_key.is_some() {
        return remote_status(&args.state, state);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "activation   {}", state.activation_id)?;
    writeln!(out, "application  {}", state.application_id)?;
    writeln!(out, "user         {}", state.user_id)?;
    writeln!(out, "server       {}", state.server_url)?;
    writeln!(out, "codes made   {}", state.counter)?;
    writeln!(out, "fingerprint  {}", state.fingerprint())?;
    if args.remote {
        eprintln!(
            "note: this state has no transport key (written by an older version); showing the \
             server's clear status only"
        );
        let client = Client::new(&state.server_url, Credentials::from_env())?;
        let remote = runtime()?.block_on(client.activation_status(&state.activation_id))?;
        writeln!(out, "status       {}", remote.activation_status)?;
        if let Some(reason) = &remote.blocked_reason {
            writeln!(out, "blocked      {reason}")?;
        }
        writeln!(
            out,
            "failures     {} of {}",
            remote.failed_attempts, remote.max_failed_attempts
        )?;
        if let Some(fp) = &remote.device_public_key_fingerprint {
            let same = *fp == state.fingerprint();
            writeln!(
                out,
                "server fingerprint {fp} ({})",
                if same { "matches" } else { "DIFFERS" }
            )?;
        }
    }
    Ok(())
}

/// `status --remote` for a state with a transport key: one JSON object on stdout.
fn remote_status(path: &std::path::Path, state: TokenState) -> Result<(), TokenError> {
    let client = Client::new(&state.server_url, Credentials::from_env())?;
    let mut token = Token::new(state);
    let report = runtime()?.block_on(token.remote_status(&client))?;
    if report.state_changed {
        token.state().save(path)?;
        eprintln!(
            "The server's counter was ahead; the token adopted it and saved {}.",
            path.display()
        );
    }
    eprintln!(
        "Status {} (blob, authenticated); counter check {}.",
        report.activation_status, report.counter_sync.result
    );
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &report).map_err(std::io::Error::other)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}
