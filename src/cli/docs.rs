//! Shell completions and man pages, generated from the same clap definitions as the parser.

use std::path::Path;

use anyhow::{Context, Result};

pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> Result<()> {
    // Into a buffer first: `generate` panics on a closed pipe (`… | head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "clinvault", &mut script);
    let mut stdout = std::io::stdout().lock();
    match std::io::Write::write_all(&mut stdout, &script)
        .and_then(|_| std::io::Write::flush(&mut stdout))
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// `clinvault.1` and `clinvault-COMMAND.1` (and `clinvault-admin-invite.1`, …) into `dir`.
pub fn manpages(cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    write_pages(cmd, dir, "clinvault", "clinvault", &mut written)?;
    out!("{written} man pages written to {}", dir.display());
    Ok(())
}

/// `name` is the page (`clinvault-admin-invite`), `usage` what users type (`clinvault admin invite`).
fn write_pages(
    cmd: clap::Command,
    dir: &Path,
    name: &str,
    usage: &str,
    written: &mut usize,
) -> Result<()> {
    let cmd = cmd.name(name.to_string()).bin_name(usage.to_string());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("rendering a man page")?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        let sub_usage = format!("{usage} {}", sub.get_name());
        write_pages(sub.clone(), dir, &sub_name, &sub_usage, written)?;
    }
    Ok(())
}
