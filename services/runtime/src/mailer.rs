//! Sending e-mail through lettre: SMTP when `SMTP_URL` is set, `.eml` files otherwise.

use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use orderflow::email::{MailError, SendMail};

use crate::config::MailConfig;

/// Sends e-mails over SMTP or writes them as `.eml` files.
#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

impl Mailer {
    pub fn from_config(config: &MailConfig) -> Result<Self, MailError> {
        match &config.smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|error| MailError::Permanent(format!("SMTP_URL: {error}")))?
                    .timeout(Some(std::time::Duration::from_secs(10)))
                    .build();
                Ok(Self::Smtp(transport))
            }
            None => {
                std::fs::create_dir_all(&config.mail_dir).map_err(|error| {
                    MailError::Permanent(format!("MAIL_DIR {}: {error}", config.mail_dir.display()))
                })?;
                Ok(Self::Files(AsyncFileTransport::new(&config.mail_dir)))
            }
        }
    }

    async fn deliver(&self, message: Message) -> Result<(), MailError> {
        match self {
            Self::Smtp(transport) => transport.send(message).await.map(drop).map_err(|error| {
                if error.is_permanent() {
                    MailError::Permanent(error.to_string())
                } else {
                    MailError::Transient(error.to_string())
                }
            }),
            Self::Files(transport) => transport
                .send(message)
                .await
                .map(drop)
                .map_err(|error| MailError::Transient(error.to_string())),
        }
    }
}

impl SendMail for Mailer {
    async fn send(&self, message: Message) -> Result<(), MailError> {
        self.deliver(message).await
    }
}
