//! `clinvault witness`: a small separate process with its own key and state file that
//! cosigns the ledger's checkpoints (c2sp.org/tlog-witness). Run it somewhere the clinic's
//! server operators cannot reach.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;

use clinvault::witness::note::VerifierKey;
use clinvault::witness::{Witness, load_or_create_key, spawn};

#[derive(Args)]
pub struct WitnessArgs {
    /// Address to listen on (`POST /add-checkpoint`).
    #[arg(long, default_value = "127.0.0.1:8450")]
    listen: String,
    /// The witness's name (its key name in cosignatures), e.g. `witness.example.org/w1`.
    #[arg(long)]
    name: String,
    /// Ed25519 seed (hex), made (mode 0600) when absent. Never shared with the log.
    #[arg(long)]
    key_file: PathBuf,
    /// The last checkpoint cosigned per log, persisted before every answer.
    #[arg(long)]
    state_file: PathBuf,
    /// A log's verifier key, `origin+id+base64` (type 0x01); repeat for several logs.
    /// `clinvault serve` prints its own at start.
    #[arg(long = "log", required = true)]
    logs: Vec<String>,
    /// Print this witness's verifier key and exit.
    #[arg(long)]
    print_vkey: bool,
}

pub async fn run(args: WitnessArgs) -> Result<()> {
    let key = load_or_create_key(&args.key_file)?;
    let mut logs = Vec::new();
    for l in &args.logs {
        logs.push(VerifierKey::parse(l).with_context(|| format!("--log {l}"))?);
    }
    let w = Arc::new(Witness::open(&args.name, key, &args.state_file, logs)?);
    if args.print_vkey {
        out!("{}", w.vkey());
        return Ok(());
    }
    let (addr, task) = spawn(w.clone(), &args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(%addr, vkey = %w.vkey(), "clinvault witness listening");
    eprintln!(
        "witness {} listening on {addr}\nvkey {}",
        args.name,
        w.vkey()
    );
    match task.await {
        Ok(r) => r.context("serving")?,
        Err(e) => bail!("the witness stopped: {e}"),
    }
    Ok(())
}
