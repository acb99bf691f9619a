//! Outgoing mail: `.eml` files in `DATA/outbox/` by default, SMTP (lettre) when `[mail]` is set.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::MailConfig;

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail address: {0}")]
    Address(String),
    #[error("building the message: {0}")]
    Build(String),
    #[error("writing to the outbox: {0}")]
    Outbox(#[from] std::io::Error),
    #[error("SMTP: {0}")]
    Smtp(String),
}

#[derive(Clone)]
pub enum Mailer {
    Outbox {
        dir: PathBuf,
        from: Mailbox,
    },
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
}

impl Mailer {
    pub fn outbox(dir: PathBuf) -> Result<Self, MailError> {
        std::fs::create_dir_all(&dir)?;
        let from = "clinvault <noreply@clinvault.invalid>"
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Address(e.to_string()))?;
        Ok(Mailer::Outbox { dir, from })
    }

    pub fn smtp(cfg: &MailConfig) -> Result<Self, MailError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Address(e.to_string()))?;
        let builder = match cfg.security.as_str() {
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.smtp_host)
                .map_err(|e| MailError::Smtp(e.to_string()))?,
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.smtp_host)
                .map_err(|e| MailError::Smtp(e.to_string()))?,
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.smtp_host),
            other => {
                return Err(MailError::Smtp(format!(
                    "mail.security {other:?}: use none, starttls or tls"
                )));
            }
        };
        let mut builder = builder.port(cfg.smtp_port);
        if !cfg.username.is_empty() {
            builder =
                builder.credentials(Credentials::new(cfg.username.clone(), cfg.password.clone()));
        }
        Ok(Mailer::Smtp {
            transport: builder.build(),
            from,
        })
    }

    pub fn is_outbox(&self) -> bool {
        matches!(self, Mailer::Outbox { .. })
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<(), MailError> {
        let from = match self {
            Mailer::Outbox { from, .. } | Mailer::Smtp { from, .. } => from.clone(),
        };
        let to: Mailbox = to
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Address(e.to_string()))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        match self {
            Mailer::Outbox { dir, .. } => {
                let bytes = message.formatted();
                let name = format!(
                    "{}-{}.eml",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
                    uuid::Uuid::new_v4().simple()
                );
                let dir = dir.clone();
                // Codes are in these files: owner-only, like the secrets file.
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let tmp = dir.join(format!(".{name}.tmp"));
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&tmp)?;
                    f.write_all(&bytes)?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, dir.join(name))
                })
                .await
                .map_err(|e| MailError::Outbox(std::io::Error::other(e.to_string())))??;
                Ok(())
            }
            Mailer::Smtp { transport, .. } => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Smtp(e.to_string())),
        }
    }
}
