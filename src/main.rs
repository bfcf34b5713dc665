//! The `offline-signer` binary: the command line, logging set-up, and a hand-over to the library.
//!
//! Every subcommand is a thin shell around one library function; this is the only file that uses `anyhow`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret as _;

use offline_signer::config::Config;
use offline_signer::model::CredentialScope;
use offline_signer::{app, bench, http, selftest, server};

/// PowerAuth-compatible offline signatures with keys in a PKCS#11 HSM.
///
/// Signs QR payloads inside the HSM and verifies the decimal codes a customer's mobile token shows.
/// Configuration is one TOML file (see README.md, "Configuration"); the HSM PIN is read from the file or
/// environment variable that file names, never from the command line.
#[derive(Debug, Parser)]
#[command(name = "offline-signer", version, propagate_version = true)]
struct Cli {
    /// Log as JSON lines instead of human-readable text (logs go to stderr).
    #[arg(long, global = true)]
    log_json: bool,

    /// Log filter, e.g. `info`, `offline_signer=debug` (RUST_LOG syntax).
    #[arg(
        long,
        global = true,
        env = "OFFLINE_SIGNER_LOG",
        default_value = "info"
    )]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check this build's PowerAuth math against upstream test-vector files.
    ///
    /// Runs every vector file it recognises in DIR by name (signatures-offline.json, signatures-v3.json,
    /// compute-derived-keys.json, compute-master-secret-key.json,
    /// verify-activation-data-signature-v3.json), prints one line per failing case, a summary per file,
    /// and as its last line `N passed, M failed`. Exit status 0 only when nothing failed.
    Selftest {
        /// Folder holding upstream-format vector files.
        #[arg(long, value_name = "DIR")]
        vectors: PathBuf,
    },

    /// Print, as JSON, every key this service owns on the HSM token with its PKCS#11 attributes.
    ///
    /// Attributes are read from the token itself, not from the service's store. Each key gets a one-line
    /// verdict against the keys table of ARCHITECTURE.md; the exit status is non-zero when a long-term
    /// private or secret key is extractable, was ever extractable, or is not sensitive.
    KeyReport {
        /// The service configuration file (its [signer] table names the token and PIN source).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },

    /// The token's key ceremony and housekeeping (run while the server is stopped).
    Hsm {
        #[command(subcommand)]
        command: HsmCommand,
    },

    /// Work with the hash-chained audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },

    /// Serve the HTTP API (spec/api.md) until SIGTERM or SIGINT.
    ///
    /// Listens on the configuration's `listen` address. On SIGTERM/SIGINT it stops accepting
    /// connections, lets in-flight requests finish, releases the HSM and exits 0.
    ///
    /// The `[http]` table sets the connection limits (header_read_timeout_ms, keep_alive_timeout_ms,
    /// max_connections, max_concurrent_requests), HTTPS (`[http.tls]` cert_file, key_file,
    /// client_ca_file) and a separate operations listener (ops_listen). Plain HTTP on a
    /// non-loopback address is logged as a warning at start.
    Serve {
        /// The service configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Listen on this address instead of the configuration's `listen`, e.g. `0.0.0.0:8080`.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },

    /// Manage integration credentials (HTTP Basic `clientToken:clientSecret`).
    ///
    /// With a sled store, run these while the server is STOPPED (one process per store; while it
    /// runs, use the integration/* HTTP methods). With PostgreSQL, any time.
    Integration {
        #[command(subcommand)]
        command: IntegrationCommand,
    },

    /// Manage applications.
    ///
    /// With a sled store, run these while the server is STOPPED (while it runs, use
    /// application/create over HTTP). With PostgreSQL, any time.
    Application {
        #[command(subcommand)]
        command: ApplicationCommand,
    },

    /// Work with the store itself (schema, copies).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },

    /// The benchmark's in-process steps: the token and store ceilings, and what a configuration
    /// says (`offline-token bench run`, called by scripts/bench.sh, runs these).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum IntegrationCommand {
    /// Create a credential and print it ONCE as `OFFLINE_SIGNER_CLIENT_TOKEN=...` and
    /// `OFFLINE_SIGNER_CLIENT_SECRET=...` lines (only the secret's SHA-256 is stored).
    ///
    /// Run it while the server is stopped (one process per store).
    Create {
        /// A name saying who uses the credential.
        #[arg(long)]
        name: String,
        /// `admin` (applications, integrations, everything) or `application` (the activations of
        /// the --applications only).
        #[arg(long, value_enum, default_value = "admin")]
        role: Role,
        /// For --role application: the application ids, comma-separated.
        #[arg(long, value_delimiter = ',', value_name = "IDS")]
        applications: Vec<String>,
        /// For --role application: allow activation/unblock.
        #[arg(long)]
        can_unblock: bool,
        /// The service configuration file (its [store] table names the store).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// List credentials: client token, name, creation time (never a secret).
    ///
    /// Run it while the server is stopped (one process per store).
    List {
        /// The service configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Remove the credential with this client token or id.
    Remove {
        /// The client token or the credential's id.
        #[arg(long, alias = "id")]
        token: String,
        /// The service configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// A credential's role on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Role {
    Admin,
    Application,
}

#[derive(Debug, Subcommand)]
enum ApplicationCommand {
    /// Create an application and its master key pair in the HSM; print its detail as JSON.
    ///
    /// Run it while the server is stopped (one process per store).
    Create {
        /// The application id (free-form name), e.g. `demo`.
        #[arg(long)]
        id: String,
        /// The service configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Bring the configured PostgreSQL database to this build's schema (safe while instances run);
    /// nothing to do for sled.
    Migrate {
        /// The service configuration file (its [store] table names the database).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Copy everything (storage-key ids, applications, activations, nonces, credentials, every
    /// audit chain with its hashes) from one store into another, empty one: sled to PostgreSQL or
    /// back. Run it with no server on either store; `audit verify` on the copy is intact.
    Copy {
        /// The configuration whose [store] is read.
        #[arg(long, value_name = "CONFIG")]
        from: PathBuf,
        /// The configuration whose (empty) [store] is written.
        #[arg(long, value_name = "CONFIG")]
        to: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum HsmCommand {
    /// The key ceremony: as the security officer, make sure the token holds exactly one trusted
    /// KEK (CKA_TRUSTED) whose CKA_UNWRAP_TEMPLATE keeps every key it unwraps sensitive and
    /// wrappable only under trusted keys. Idempotent. See docs/key-isolation.md.
    Provision {
        /// The service configuration file (its [signer] table names the token).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// File holding the security officer's PIN (never given on the command line).
        #[arg(long, value_name = "FILE")]
        so_pin_file: PathBuf,
    },
    /// List master key objects on the token that the store does not know (orphans left when a
    /// generation's answer was lost); with --yes, destroy them. Dry run by default.
    ///
    /// Run it while the server is stopped (one process per store).
    Gc {
        /// The service configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Destroy the orphans (without it, only list them).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the audit chain from the first record and report the first broken link, if any; then
    /// check every signed checkpoint (stored, and in the external checkpoint file) with the
    /// exported audit public key. No HSM is needed.
    ///
    /// Exit status 0 when every record's hash and link and every checkpoint check out, 1 otherwise.
    Verify {
        /// The service configuration file (its data_dir holds the store).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Write the evidence bundle of one activation (its audit records, the chain segments linking
    /// them to signed checkpoints, the checkpoints and the public key) as one JSON document.
    Evidence {
        /// The activation id.
        #[arg(long, value_name = "ID")]
        activation: String,
        /// The service configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Where to write it (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Check an evidence bundle with neither the store nor the HSM. Exit status 0 when it verifies.
    VerifyEvidence {
        /// The bundle written by `audit evidence`.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    // Every file and folder this process creates (the store's included) is private: 0600 / 0700.
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("offline-signer: {e:#}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("offline-signer: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .with_context(|| format!("invalid --log filter {:?}", cli.log))?;
    // Text lines go through `OneLine`, which escapes every control character a field value could
    // carry (a forged newline cannot start a fake line); JSON lines escape them by JSON's rules.
    // Colours are off for the same reason: escape sequences are control characters.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| OneLine(std::io::stderr()))
        .with_ansi(false);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

/// A log writer that keeps one event on one line: every control character (C0, DEL, C1) and the
/// Unicode line and paragraph separators are written as `\u{..}` escapes, except the newline that
/// ends the event. The formatter hands over each event whole in one `write`.
struct OneLine<W>(W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, "\n"),
            _ => (buf, ""),
        };
        let text = String::from_utf8_lossy(body);
        let mut line = String::with_capacity(buf.len() + 8);
        for c in text.chars() {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                line.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            } else {
                line.push(c);
            }
        }
        line.push_str(end);
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Command {
    /// The `--config` file of the commands that have one.
    fn config_path(&self) -> Option<&std::path::Path> {
        match self {
            Command::KeyReport { config }
            | Command::Serve { config, .. }
            | Command::Hsm {
                command: HsmCommand::Provision { config, .. } | HsmCommand::Gc { config, .. },
            }
            | Command::Audit {
                command: AuditCommand::Verify { config } | AuditCommand::Evidence { config, .. },
            }
            | Command::Application {
                command: ApplicationCommand::Create { config, .. },
            }
            | Command::Integration {
                command:
                    IntegrationCommand::Create { config, .. }
                    | IntegrationCommand::List { config }
                    | IntegrationCommand::Remove { config, .. },
            } => Some(config),
            Command::Store {
                command: StoreCommand::Migrate { config },
            } => Some(config),
            Command::Store {
                command: StoreCommand::Copy { .. },
            }
            | Command::Audit {
                command: AuditCommand::VerifyEvidence { .. },
            }
            | Command::Selftest { .. }
            | Command::Bench { .. } => None,
        }
    }
}

/// Applies `[signer] module_env`: a process cannot safely change its own environment, so when the
/// configuration wants variables this process lacks, it re-executes itself with them (same
/// arguments). Returns only when nothing was missing (or on error).
fn apply_module_env(command: &Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let Some(path) = command.config_path() else {
        return Ok(());
    };
    // A configuration that does not load is reported by the command itself.
    let Ok(config) = Config::load(path) else {
        return Ok(());
    };
    let offline_signer::signer::SignerConfig::Pkcs11(p) = &config.signer else {
        return Ok(());
    };
    let missing = p.missing_module_env();
    if missing.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("finding this program to apply signer.module_env")?;
    let mut child = std::process::Command::new(exe);
    child.args(std::env::args_os().skip(1));
    for (name, value) in &missing {
        tracing::debug!(%name, value = %value.display(), "applying signer.module_env");
        child.env(name, value);
    }
    // `exec` only returns on failure.
    let err = child.exec();
    Err(anyhow::Error::new(err).context("re-executing with signer.module_env"))
}

fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { config } => {
            let config = Config::load(&config)?;
            let v = app::verify_audit(&config)?;
            let report = &v.chains;
            match &report.first_broken {
                None => println!(
                    "audit chain intact: {} records in {} chain(s)",
                    report.records, report.chains
                ),
                Some((seq, reason)) => {
                    let chain = report
                        .broken_chain
                        .as_ref()
                        .map_or_else(String::new, |c| format!(" {c}"));
                    println!(
                        "audit chain{chain} BROKEN at record {seq}: {reason} ({} records read)",
                        report.records
                    );
                }
            }
            let cps = &v.checkpoints;
            match &cps.first_broken {
                Some(why) => println!("audit checkpoints BROKEN: {why}"),
                None => {
                    println!(
                        "audit checkpoints intact: {} stored checkpoint(s) signed by {} and their records unchanged",
                        cps.stored,
                        v.public_key_file.display()
                    );
                    match cps.external {
                        None => println!(
                            "audit checkpoint file {} absent: rollback of the store not checked",
                            v.checkpoint_file.display()
                        ),
                        Some(lines) => {
                            let newest: Vec<String> = cps
                                .newest_external
                                .iter()
                                .map(|(chain, seq)| format!("{chain}#{seq}"))
                                .collect();
                            println!(
                                "audit store not older than the checkpoint file {}: {lines} line(s), newest {}",
                                v.checkpoint_file.display(),
                                if newest.is_empty() {
                                    "none".to_owned()
                                } else {
                                    newest.join(", ")
                                }
                            );
                        }
                    }
                }
            }
            Ok(exit_status(v.is_intact()))
        }
        AuditCommand::Evidence {
            activation,
            config,
            out,
        } => {
            let config = Config::load(&config)?;
            let evidence = app::audit_evidence(&config, &activation)?;
            let mut json = serde_json::to_string_pretty(&evidence.bundle)?;
            json.push('\n');
            match &out {
                Some(path) => std::fs::write(path, json)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout().lock().write_all(json.as_bytes())?,
            }
            eprintln!(
                "{} record(s) of activation {activation} linked to signed checkpoints",
                evidence.covered
            );
            if evidence.uncovered > 0 {
                eprintln!(
                    "{} newer record(s) are not covered by a checkpoint yet and were left out; \
                     run this again after the next checkpoint",
                    evidence.uncovered
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifyEvidence { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let bundle: offline_signer::service::audit_trail::EvidenceBundle =
                match serde_json::from_str(&text) {
                    Ok(b) => b,
                    Err(e) => {
                        println!("evidence INVALID: not an evidence bundle ({e})");
                        return Ok(ExitCode::FAILURE);
                    }
                };
            match offline_signer::service::audit_trail::verify_evidence(&bundle) {
                Ok(records) => {
                    for rec in &records {
                        println!(
                            "record {} {} {} {}",
                            rec.seq,
                            rec.operation.as_str(),
                            rec.outcome.as_str(),
                            rec.actor.as_deref().unwrap_or("-")
                        );
                    }
                    println!(
                        "evidence valid: {} record(s) of activation {} in {} segment(s), each linked to a checkpoint signed by the key in the bundle",
                        records.len(),
                        bundle.activation_id,
                        bundle.segments.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(why) => {
                    println!("evidence INVALID: {why}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    apply_module_env(&command)?;
    match command {
        Command::Selftest { vectors } => {
            let mut out = std::io::stdout().lock();
            let summary = selftest::run(&vectors, &mut out)
                .with_context(|| format!("reading vectors from {}", vectors.display()))?;
            out.flush()?;
            Ok(exit_status(summary.failed == 0))
        }
        Command::KeyReport { config } => {
            let config = Config::load(&config)?;
            let report = runtime()?.block_on(app::key_report(&config))?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
            for key in &report.keys {
                eprintln!(
                    "{} {}: {}",
                    if key.ok { "ok  " } else { "FAIL" },
                    key.attributes.label,
                    key.verdict
                );
            }
            for probe in &report.probes {
                eprintln!(
                    "{} probe: {} ({}): token answered {}",
                    if probe.refused { "ok  " } else { "FAIL" },
                    probe.name,
                    probe.target,
                    probe.answer
                );
            }
            match (&report.orphans, &report.orphans_absent_because) {
                (Some(orphans), _) if orphans.is_empty() => eprintln!("ok   no orphans"),
                (Some(orphans), _) => {
                    for orphan in orphans {
                        eprintln!("warn orphan (unknown to the store): {orphan}; see `hsm gc`");
                    }
                }
                (None, Some(why)) => eprintln!("note orphans and wrappedKeys.count absent: {why}"),
                (None, None) => {}
            }
            Ok(exit_status(report.violations() == 0))
        }
        Command::Hsm {
            command:
                HsmCommand::Provision {
                    config,
                    so_pin_file,
                },
        } => {
            let config = Config::load(&config)?;
            let outcome = app::provision(&config, &so_pin_file)?;
            println!(
                "{} trusted KEK {}",
                if outcome.created { "created" } else { "found" },
                outcome.kek_id
            );
            if outcome.untrusted_keks > 0 {
                eprintln!(
                    "{} KEK object(s) visible to the security officer are not trusted; \
                     see docs/key-isolation.md, \"Tokens made before\"",
                    outcome.untrusted_keks
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Hsm {
            command: HsmCommand::Gc { config, yes },
        } => {
            let config = Config::load(&config)?;
            let outcome = runtime()?.block_on(app::gc(&config, yes))?;
            for orphan in &outcome.orphans {
                println!("orphan {orphan}");
            }
            if yes {
                println!("destroyed {} token object(s)", outcome.destroyed);
            } else if !outcome.orphans.is_empty() {
                println!("dry run: nothing destroyed; run again with --yes to destroy them");
            } else {
                println!("no orphans");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { command } => audit(command),
        Command::Serve { config, listen } => {
            let mut config = Config::load(&config)?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            runtime()?.block_on(server::serve(&config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Integration { command } => integration(command),
        Command::Application {
            command: ApplicationCommand::Create { id, config },
        } => {
            let config = Config::load(&config)?;
            let detail = runtime()?.block_on(server::create_application(&config, &id))?;
            println!("{}", http::application_json(detail));
            Ok(ExitCode::SUCCESS)
        }
        Command::Store {
            command: StoreCommand::Migrate { config },
        } => {
            let config = Config::load(&config)?;
            match app::migrate_store(&config)? {
                None => println!("sled store: nothing to migrate"),
                Some(m) if m.from == m.to => println!("schema already at version {}", m.to),
                Some(m) => println!("schema migrated from version {} to {}", m.from, m.to),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Store {
            command: StoreCommand::Copy { from, to },
        } => {
            let from = Config::load(&from)?;
            let to = Config::load(&to)?;
            let r = app::copy_store(&from, &to)?;
            println!(
                "copied {} applications, {} activations, {} nonces, {} credentials, {} audit records in {} chains",
                r.applications,
                r.activations,
                r.nonces,
                r.credentials,
                r.audit_records,
                r.audit_chains
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { command } => {
            println!("{}", bench::main(command)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn integration(command: IntegrationCommand) -> anyhow::Result<ExitCode> {
    match command {
        IntegrationCommand::Create {
            name,
            role,
            applications,
            can_unblock,
            config,
        } => {
            let scope = match role {
                Role::Admin if !applications.is_empty() || can_unblock => {
                    anyhow::bail!("--applications and --can-unblock go with --role application")
                }
                Role::Admin => CredentialScope::Admin,
                Role::Application => CredentialScope::applications(applications, can_unblock),
            };
            let config = Config::load(&config)?;
            let created = server::create_integration(&config, &name, scope)?;
            println!("OFFLINE_SIGNER_CLIENT_ID={}", created.id);
            println!("OFFLINE_SIGNER_CLIENT_TOKEN={}", created.client_token);
            println!(
                "OFFLINE_SIGNER_CLIENT_SECRET={}",
                created.client_secret.expose_secret()
            );
            eprintln!("The secret is shown only now; the store keeps only its SHA-256.");
        }
        IntegrationCommand::List { config } => {
            let config = Config::load(&config)?;
            for c in server::list_integrations(&config)? {
                let created = http::wire::rfc3339(c.created_at).unwrap_or_default();
                let scope = match &c.scope {
                    CredentialScope::Admin => "ADMIN".to_owned(),
                    CredentialScope::Applications {
                        application_ids,
                        can_unblock,
                    } => format!(
                        "APPLICATION:{}{}",
                        application_ids.join(","),
                        if *can_unblock { " canUnblock" } else { "" }
                    ),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.client_token, c.id, c.name, scope, created
                );
            }
        }
        IntegrationCommand::Remove { token, config } => {
            let config = Config::load(&config)?;
            server::remove_integration(&config, &token)?;
            println!("removed {token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn exit_status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Most threads of tokio's blocking pool (its default is 512). Store writes run there and each
/// waits for its group-commit flush, so under load the pool grows to one thread per request in
/// flight, each with its stack and its share of the allocator's arenas; past this many, writes
/// queue for a thread and the next flush serves them all the same.
const MAX_BLOCKING_THREADS: usize = 32;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_stays_one_line() {
        let mut out = OneLine(Vec::new());
        out.write_all(b"INFO id=a\nINFO forged\r\x1b[2J\xe2\x80\xa8 done\n")
            .expect("write");
        let text = String::from_utf8(out.0).expect("utf-8");
        assert_eq!(
            text,
            "INFO id=a\\u{a}INFO forged\\u{d}\\u{1b}[2J\\u{2028} done\n"
        );
        assert_eq!(text.matches('\n').count(), 1);
    }
}
