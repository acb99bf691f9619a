//! Shell completions and man pages, generated from the same clap definitions as the parser.

use std::path::Path;

use anyhow::{Context, Result};

pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> Result<()> {
    clap_complete::generate(shell, &mut cmd, "clinvault", &mut std::io::stdout());
    Ok(())
}

/// `clinvault.1` and `clinvault-COMMAND.1` (and `clinvault-admin-invite.1`, …) into `dir`.
pub fn manpages(cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    write_pages(cmd, dir, "clinvault", &mut written)?;
    out!("{written} man pages written to {}", dir.display());
    Ok(())
}

fn write_pages(cmd: clap::Command, dir: &Path, name: &str, written: &mut usize) -> Result<()> {
    let cmd = cmd.name(name.to_string());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("rendering a man page")?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub.clone(), dir, &sub_name, written)?;
    }
    Ok(())
}
