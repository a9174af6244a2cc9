//! The wire format of the simulator's HTTP API, shared by the server and the payment
//! worker's client, so the two cannot drift apart.
//!
//! | call | answer |
//! | --- | --- |
//! | `POST /v1/charges` + `Idempotency-Key`, [`CreateCharge`] | 200 [`Charge`] (`succeeded`, or `failed` with a `failure_code` for a declined card); the same key again answers the same charge |
//! | `GET /v1/charges?idempotency_key=K` | 200 [`Charge`], or 404 when no charge was made under `K` (or it left the window) |
//! | `POST /v1/refunds` + `Idempotency-Key`, [`CreateRefund`] | 200 [`Refund`]; 404 for an unknown charge |
//! | `GET /v1/audit` | 200 [`Audit`]: what the provider did (for tests and operators) |
//! | `GET /healthz` | 200 |
//!
//! Errors are [`ApiError`] bodies: 400 (a malformed request, an unknown payment token), 401
//! (a missing or wrong API key, when one is set), 404, 409 (a key reused with other
//! parameters), 503 (a simulated outage: nothing was done), 504 (a simulated lost answer:
//! the charge *was* made). 4xx never succeed on a retry; 5xx may.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCharge {
    /// In the currency's minor unit (cents).
    pub amount: i64,
    /// ISO 4217, any case.
    pub currency: String,
    /// The card token: `tok_visa` approves, `tok_chargeDeclined` declines.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeStatus {
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub id: String,
    pub status: ChargeStatus,
    /// Why a failed charge failed (`card_declined`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub idempotency_key: String,
    /// Refunded in full.
    pub refunded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRefund {
    /// The charge's `id`.
    pub charge: String,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub charge: String,
    pub amount: i64,
    pub idempotency_key: String,
}

/// What the provider did since it started, its journal included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Charges made (succeeded or failed), one per idempotency key.
    pub charges: u64,
    pub succeeded: u64,
    pub refunds: u64,
    /// Charges made under a key that had already been charged: a retry the provider
    /// failed to recognise. Zero unless a key outlived the window.
    pub charged_twice: u64,
    /// Idempotency keys held now (charges and refunds).
    pub keys_held: u64,
    /// Keys dropped because the cap was reached before their window ended.
    pub evicted_early: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `invalid_request`, `unauthorized`, `not_found`, `idempotency_conflict`,
    /// `unavailable`, `answer_lost`.
    pub code: String,
    pub message: String,
}
