//! Order e-mails through lettre: SMTP when configured, `.eml` files otherwise.

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use crate::config::MailConfig;
use crate::status::{CancelReason, NotificationKind};
use crate::views::{Customer, OrderItem};

/// What an order e-mail tells about its order (read by
/// [`crate::lifecycle::notification_facts`]).
#[derive(Debug, Clone)]
pub struct OrderMail {
    pub order_id: Uuid,
    pub customer: Customer,
    pub cancel_reason: Option<String>,
    /// The order's payment was refunded.
    pub refunded: bool,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub currency: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

macro_rules! text_header {
    ($name:ident, $header:literal) => {
        #[derive(Debug, Clone)]
        pub struct $name(pub String);

        impl Header for $name {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($header)
            }

            fn parse(value: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(value.to_string()))
            }

            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

text_header!(XOrderId, "X-Order-Id");
text_header!(XNotificationKind, "X-Notification-Kind");

/// Deterministic per order and kind: a resend after a crash carries the same Message-ID,
/// so the receiving side can recognise the duplicate.
pub fn message_id(order_id: Uuid, kind: NotificationKind) -> String {
    format!("<{order_id}.{kind}@orderflow.example>")
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Connection refused, timeout, 4xx: try again later.
    #[error("mail transport unavailable: {0}")]
    Transient(String),
    /// Bad address, 5xx: the same message will never go through.
    #[error("mail rejected: {0}")]
    Permanent(String),
}

pub fn compose(
    from: &Mailbox,
    order: &OrderMail,
    kind: NotificationKind,
) -> Result<Message, MailError> {
    let to: Mailbox = format!(
        "{} <{}>",
        order.customer.name.replace(['<', '>', '"'], ""),
        order.customer.email
    )
    .parse()
    .or_else(|_| order.customer.email.parse())
    .map_err(|error| MailError::Permanent(format!("recipient address: {error}")))?;
    let (subject, body) = match kind {
        NotificationKind::OrderConfirmed => (
            format!("Your order {} is confirmed", order.order_id),
            format!(
                "Hello {},\n\nthank you for your order. It is paid and on its way.\n\n{}",
                order.customer.name,
                order_lines(order)
            ),
        ),
        NotificationKind::OrderCancelled => (
            format!("Your order {} was cancelled", order.order_id),
            format!(
                "Hello {},\n\nwe are sorry: your order was cancelled ({}). {}\n\n{}",
                order.customer.name,
                order
                    .cancel_reason
                    .as_deref()
                    .unwrap_or("cancelled")
                    .replace('_', " "),
                if order.refunded {
                    "Your payment has been refunded."
                } else if order.cancel_reason.as_deref()
                    == Some(CancelReason::CustomerRequest.as_str())
                {
                    // A charge may have been in flight when the customer cancelled.
                    "If your card was charged, the amount is being refunded."
                } else {
                    "You have not been charged."
                },
                order_lines(order)
            ),
        ),
    };
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id(order.order_id, kind)))
        .header(XOrderId(order.order_id.to_string()))
        .header(XNotificationKind(kind.to_string()))
        .body(body)
        .map_err(|error| MailError::Permanent(error.to_string()))
}

fn order_lines(order: &OrderMail) -> String {
    let mut text = String::new();
    for item in &order.items {
        text.push_str(&format!(
            "  {} x {} at {} {}\n",
            item.quantity,
            item.sku,
            cents(item.unit_price_cents),
            order.currency
        ));
    }
    text.push_str(&format!(
        "Total: {} {}\n",
        cents(order.total_cents),
        order.currency
    ));
    text
}

fn cents(amount: i64) -> String {
    format!("{}.{:02}", amount / 100, amount % 100)
}

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

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
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

/// The value of a header in a raw message (its first occurrence, on one line), as a
/// receiving server stored it.
pub fn header_value(message: &str, name: &str) -> Option<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    message
        .lines()
        .take_while(|line| !line.is_empty())
        .find(|line| line.to_ascii_lowercase().starts_with(&prefix))
        .map(|line| line[prefix.len()..].trim().to_string())
}
