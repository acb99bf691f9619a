//! `clinvault`: the terminal client, the server and the scriptable commands (DESIGN.md §1).

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "clinvault",
    version,
    about = "End-to-end encrypted, tamper-evident medical reports"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the format constants this build seals with.
    Formats,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Formats) => {
            println!(
                "report format v1: AES-256-GCM chunks ({} B – {} B, default {} B), SHA-256 hash chain, Ed25519 manifest, HPKE-wrapped keys",
                clinvault::seal::MIN_CHUNK_SIZE,
                clinvault::seal::MAX_CHUNK_SIZE,
                clinvault::seal::DEFAULT_CHUNK_SIZE
            );
            Ok(())
        }
        None => {
            eprintln!(
                "clinvault {}: the terminal client and the embedded server are not built yet; \
                 the sealing core is available as the `clinvault` library. See README.md.",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
