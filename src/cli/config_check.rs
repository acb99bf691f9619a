//! `clinvault config check [FILE]`.

use std::path::Path;

use anyhow::{Result, anyhow};

use clinvault::config;

pub fn run(file: Option<&Path>, overrides: &[(&str, String)]) -> Result<()> {
    let file = file.ok_or_else(|| {
        anyhow!("which file? `clinvault config check FILE` (or --config FILE / CLINVAULT_CONFIG)")
    })?;
    // The same load `serve` and the client do: unknown keys and bad values are refused there.
    let cfg = config::load(Some(file), overrides)?;
    out!(
        "# {} is valid. Effective settings (defaults < file < CLINVAULT_* environment < flags), secrets redacted:\n",
        file.display()
    );
    out!("{}", cfg.redacted_toml()?);
    Ok(())
}
