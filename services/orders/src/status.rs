//! The vocabulary of the order lifecycle: one enum per fact, used by the API, the
//! workers and the tests alike. Stored as text; `as_str` is the stored form, and each
//! enum reads and writes itself as a `Text` column, so no code compares statuses as
//! strings.

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize,
            diesel::expression::AsExpression, diesel::deserialize::FromSqlRow, utoipa::ToSchema,
        )]
        #[serde(rename_all = "snake_case")]
        #[diesel(sql_type = Text)]
        pub enum $name { $($variant),+ }

        impl ToSql<Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl FromSql<Text, Pg> for $name {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                let text = <String as FromSql<Text, Pg>>::from_sql(value)?;
                Self::parse(&text)
                    .ok_or_else(|| format!("unknown {} {text:?}", stringify!($name)).into())
            }
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(value: &str) -> Option<Self> {
                match value { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where an order is in its lifecycle. `fulfilled` and `cancelled` are terminal.
    OrderStatus {
        Pending => "pending",
        Paid => "paid",
        Reserved => "reserved",
        Fulfilled => "fulfilled",
        Cancelled => "cancelled",
    }
);

impl OrderStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Fulfilled | Self::Cancelled)
    }
}

text_enum!(CancelReason {
    PaymentDeclined => "payment_declined",
    OutOfStock => "out_of_stock",
    CustomerRequest => "customer_request",
});

text_enum!(
    /// Timeline entries, named after the state the order reached. `notification_failed`:
    /// an e-mail that can never be delivered (the order finishes all the same).
    EventType {
        Placed => "placed",
        Paid => "paid",
        Reserved => "reserved",
        Shipped => "shipped",
        Fulfilled => "fulfilled",
        Cancelled => "cancelled",
        Refunded => "refunded",
        Notified => "notified",
        NotificationFailed => "notification_failed",
        TaskDead => "task_dead",
    }
);

text_enum!(PaymentStatus {
    Captured => "captured",
    Declined => "declined",
    Refunded => "refunded",
});

text_enum!(
    /// The e-mails an order can get; also the `X-Notification-Kind` header.
    NotificationKind {
        OrderConfirmed => "order_confirmed",
        OrderCancelled => "order_cancelled",
    }
);
