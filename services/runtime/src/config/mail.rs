//! The e-mails: SMTP or files, the sender, the links in them.

use std::path::PathBuf;

use super::{invalid, optional_var, var, ConfigError, Secret};

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// lettre's URL form, e.g. `smtp://127.0.0.1:1025`; may hold credentials.
    pub smtp_url: Option<Secret>,
    /// Where `.eml` files go when there is no SMTP server.
    pub mail_dir: PathBuf,
    pub from: lettre::message::Mailbox,
    /// `PUBLIC_URL`: the API's address as customers reach it; the e-mails link to the
    /// order's page there. No trailing slash.
    pub public_url: String,
}

/// Where the API listens by default, as a URL.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";

impl MailConfig {
    /// Who the e-mails come from, and where their links point.
    pub fn letterhead(&self) -> orderflow::email::Letterhead {
        orderflow::email::Letterhead {
            from: self.from.clone(),
            public_url: self.public_url.clone(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let smtp_url: Option<String> = optional_var("SMTP_URL")?;
        if let Some(url) = &smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(invalid("SMTP_URL", "must start with smtp:// or smtps://"));
            }
        }
        let public_url: String = var("PUBLIC_URL", DEFAULT_PUBLIC_URL.to_string())?;
        let public_url = public_url.trim_end_matches('/').to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://"))
            || public_url.contains(char::is_whitespace)
        {
            return Err(invalid(
                "PUBLIC_URL",
                "must be an http:// or https:// URL without spaces",
            ));
        }
        Ok(Self {
            public_url,
            smtp_url: smtp_url.map(Secret),
            mail_dir: var("MAIL_DIR", PathBuf::from(".data/mail"))?,
            from: var(
                "MAIL_FROM",
                lettre::message::Mailbox::new(
                    Some("Orderflow".into()),
                    lettre::Address::new("orders", "orderflow.example")
                        .map_err(|e| invalid("MAIL_FROM", e.to_string()))?,
                ),
            )?,
        })
    }
}
