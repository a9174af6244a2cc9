//! Order e-mails: what each says, its deterministic Message-ID, the customer's address as
//! the API accepts it. Sending them is `orderflow_runtime::mailer`'s.

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::Message;
use uuid::Uuid;

use crate::status::{CancelReason, NotificationKind};
use crate::steps::ship::Parcel;
use crate::views::{Customer, OrderItem};

/// What an order e-mail tells about its order (read by
/// [`crate::lifecycle::notification_facts`]).
#[derive(Debug, Clone)]
pub struct OrderMail {
    pub order_id: Uuid,
    pub customer: Customer,
    pub cancel_reason: Option<CancelReason>,
    /// The order's payment was refunded.
    pub refunded: bool,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub currency: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Opens the order's page; the e-mail links to it.
    pub access_token: String,
    /// The parcel booked for it, once the shipping step has run.
    pub parcel: Option<Parcel>,
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

/// A customer's e-mail address, as the API accepts it and the mailer sends to: one parser
/// for both, so that an accepted order can always be given its e-mail. lettre's own
/// address syntax, minus what a shop has no business mailing: IP-literal domains
/// (`a@[127.0.0.1]`) and bare IP addresses, and anything over 254 characters (RFC 5321's
/// limit on a forward path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerEmail(lettre::Address);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEmail {
    #[error("must be at most 254 characters")]
    TooLong,
    #[error("is not an e-mail address ({0})")]
    Syntax(String),
    #[error("must name a mail domain, not an IP address")]
    IpDomain,
}

impl CustomerEmail {
    pub const MAX_LENGTH: usize = 254;

    /// Parses an address as given (surrounding whitespace aside).
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let raw = raw.trim();
        if raw.len() > Self::MAX_LENGTH {
            return Err(InvalidEmail::TooLong);
        }
        let address: lettre::Address =
            raw.parse()
                .map_err(|error: lettre::address::AddressError| {
                    InvalidEmail::Syntax(error.to_string())
                })?;
        let domain = address.domain();
        let literal = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']'));
        if literal.is_some() || domain.parse::<std::net::IpAddr>().is_ok() {
            return Err(InvalidEmail::IpDomain);
        }
        Ok(Self(address))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    pub fn into_address(self) -> lettre::Address {
        self.0
    }
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

/// Delivers composed e-mails: the notification step's outside call. The runtime's mailer
/// (`orderflow_runtime::mailer::Mailer`: SMTP, or `.eml` files) is the one that ships.
pub trait SendMail: Send + Sync + 'static {
    fn send(
        &self,
        message: Message,
    ) -> impl std::future::Future<Output = Result<(), MailError>> + Send;
}

/// Who the e-mails come from, and where their links point.
#[derive(Debug, Clone)]
pub struct Letterhead {
    pub from: Mailbox,
    /// The API's public address (`PUBLIC_URL`), without a trailing slash.
    pub public_url: String,
}

impl Letterhead {
    /// The order's page, with the token that opens it. The token rides in the fragment,
    /// which browsers never send: it stays out of access logs and Referer headers.
    pub fn order_link(&self, order: &OrderMail) -> String {
        format!(
            "{}/track/{}#token={}",
            self.public_url, order.order_id, order.access_token
        )
    }
}

pub fn compose(
    letterhead: &Letterhead,
    order: &OrderMail,
    kind: NotificationKind,
) -> Result<Message, MailError> {
    let address = CustomerEmail::parse(&order.customer.email)
        .map_err(|error| MailError::Permanent(format!("recipient address: {error}")))?;
    // A display name with control characters (line breaks) cannot be a header: lettre
    // refuses to write it. The API refuses such names; older orders get spaces instead.
    let name: String = order
        .customer
        .name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let to = Mailbox::new(Some(name), address.into_address());
    let (subject, body) = match kind {
        NotificationKind::OrderConfirmed => (
            format!("Your order {} is confirmed", order.order_id),
            format!(
                "Hello {},\n\nthank you for your order. It is paid and on its way.{}\n\n{}\nYour order: {}\n",
                order.customer.name,
                order
                    .parcel
                    .as_ref()
                    .map(|parcel| format!(
                        "\nYour parcel: {} tracking number {}.",
                        parcel.carrier, parcel.tracking_number
                    ))
                    .unwrap_or_default(),
                order_lines(order),
                letterhead.order_link(order)
            ),
        ),
        NotificationKind::OrderCancelled => (
            format!("Your order {} was cancelled", order.order_id),
            format!(
                "Hello {},\n\nwe are sorry: your order was cancelled ({}). {}\n\n{}\nYour order: {}\n",
                order.customer.name,
                order
                    .cancel_reason
                    .map_or("cancelled", CancelReason::as_str)
                    .replace('_', " "),
                if order.refunded {
                    "Your payment has been refunded."
                } else if order.cancel_reason == Some(CancelReason::CustomerRequest) {
                    // A charge may have been in flight when the customer cancelled.
                    "If your card was charged, the amount is being refunded."
                } else {
                    "You have not been charged."
                },
                order_lines(order),
                letterhead.order_link(order)
            ),
        ),
    };
    Message::builder()
        .from(letterhead.from.clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_and_the_mailer_agree_on_addresses() {
        for accepted in [
            "ada@example.com",
            "a.b+tag@mail.example.co.uk",
            "x@localhost",
        ] {
            assert!(CustomerEmail::parse(accepted).is_ok(), "{accepted}");
        }
        for refused in [
            "a@[127.0.0.1]",
            "a@127.0.0.1",
            "a@[::1]",
            "not an address",
            "@example.com",
            "a@",
        ] {
            assert!(CustomerEmail::parse(refused).is_err(), "{refused}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(CustomerEmail::parse(&long), Err(InvalidEmail::TooLong));
    }

    #[test]
    fn every_accepted_address_can_be_composed_whatever_the_name() {
        let letterhead = Letterhead {
            from: "Orderflow <orders@orderflow.example>"
                .parse()
                .expect("from"),
            public_url: "http://shop.example".into(),
        };
        for name in [
            "Ada",
            "Ada \"The Countess\" <Lovelace>",
            "Zoë, née Smith",
            "a\r\nBcc: x@y.z",
        ] {
            let order = OrderMail {
                order_id: Uuid::nil(),
                customer: Customer {
                    email: "ada@example.com".into(),
                    name: name.into(),
                },
                cancel_reason: None,
                refunded: false,
                items: Vec::new(),
                total_cents: 100,
                currency: "USD".into(),
                created_at: chrono::Utc::now(),
                access_token: "t".into(),
                parcel: None,
            };
            let message = compose(&letterhead, &order, NotificationKind::OrderConfirmed)
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            let text = String::from_utf8_lossy(&message.formatted()).to_string();
            let head = text.split("\r\n\r\n").next().unwrap_or_default();
            assert!(
                !head.contains("\r\nBcc:"),
                "{name:?} injected a header: {text}"
            );
            // Long lines are quoted-printable: undo its soft breaks and `=3D` before looking.
            let decoded = text.replace("=\r\n", "").replace("=3D", "=");
            assert!(decoded.contains(
                "http://shop.example/track/00000000-0000-0000-0000-000000000000#token=t"
            ));
        }
    }
}
