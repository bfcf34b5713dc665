//! The `offline-token` binary: the phone side of offline-signer on the command line.
//!
//! `activate`, `sign` and `status` are the software mobile token; `qr` shows a payload as a QR code;
//! `bench` drives the benchmark against a running `offline-signer serve`. Everything talks to the
//! service over HTTP; this is the only file of the crate that uses `anyhow`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use offline_token::{bench, cli, qr};

/// The phone side of offline-signer: a software mobile token, QR codes and the load generator.
///
/// A test double of a phone app and of a bank's web application, for development, tests and
/// benchmarks. It holds the keys a phone keeps in secure storage in a plain 0600 file: never use it
/// as anything but test material.
#[derive(Debug, Parser)]
#[command(name = "offline-token", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Token(cli::TokenCommand),

    /// Show an offlineData payload or an activation code (--activation-code) as a QR code: in the
    /// terminal, or as a PNG or SVG file.
    Qr(qr::QrArgs),

    /// Benchmarks: the service over HTTP against its token and store ceilings (scripts/bench.sh).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<()> = match cli.command {
        Command::Token(command) => cli::run(command).map_err(Into::into),
        Command::Qr(args) => qr::run(args).map_err(Into::into),
        Command::Bench { command } => bench::main(command).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("offline-token: {e:#}");
            ExitCode::from(2)
        }
    }
}
