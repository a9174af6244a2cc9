//! The simulated provider itself, without HTTP: what it decides for a card, what it keeps
//! per idempotency key and for how long, and how slow and unreliable it is asked to be.
//! `gateway-sim` serves it over HTTP; the payment worker runs it in-process when no
//! provider URL is configured.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::api::{Audit, Charge, ChargeStatus, CreateCharge, CreateRefund, Refund};
use crate::journal::{Entry, Journal};

pub use orderflow::payment::{TOKEN_APPROVED, TOKEN_DECLINED};

/// How long calls take: log-normal with the given median and 99th percentile (a constant
/// when they are equal), like the long-tailed latency of a real provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub median: Duration,
    pub p99: Duration,
}

/// The standard normal quantile at 0.99.
const Z_99: f64 = 2.326_347_874;

impl Latency {
    pub fn constant(latency: Duration) -> Self {
        Self {
            median: latency,
            p99: latency,
        }
    }

    /// One call's latency.
    pub fn sample(&self) -> Duration {
        if self.median.is_zero() {
            return Duration::ZERO;
        }
        let spread = (self.p99.as_secs_f64() / self.median.as_secs_f64()).ln() / Z_99;
        if spread <= 0.0 {
            return self.median;
        }
        self.median
            .mul_f64((spread * standard_normal()).exp().min(1e3))
    }
}

/// One draw from N(0, 1) (Box-Muller).
fn standard_normal() -> f64 {
    let u1: f64 = rand::random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rand::random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// How the provider misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Behaviour {
    pub latency: Latency,
    /// Calls that fail (503) before anything is done.
    pub transient_failure_rate: f64,
    /// Charges that are made, and whose answer is then lost (504).
    pub lost_response_rate: f64,
}

/// How long idempotency keys are kept: for `window`, and never more than `max_keys` of
/// them (the oldest go first). A retry after its key is gone is a new request: a charge
/// retried that late is made again. The payment worker never retries that late (its
/// attempts end within minutes, well inside the window), see the crate's README.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub window: Duration,
    pub max_keys: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("simulated outage: nothing was done")]
    Unavailable,
    #[error("simulated lost answer: the charge was made")]
    AnswerLost,
    #[error("unknown payment token {0:?}")]
    UnknownToken(String),
    #[error("no charge {0:?}")]
    UnknownCharge(String),
    #[error("the idempotency key {0:?} was used with other parameters")]
    KeyReused(String),
    #[error("a refund of {requested} exceeds the charge's {charged}")]
    RefundTooLarge { requested: i64, charged: i64 },
}

/// What is kept per idempotency key.
enum Kept {
    Charge(Charge),
    Refund(Refund),
}

#[derive(Default)]
struct Ledger {
    by_key: HashMap<Arc<str>, Kept>,
    /// Charge id → its idempotency key, for refunds.
    charge_keys: HashMap<Arc<str>, Arc<str>>,
    /// Keys in the order they were made, to drop the oldest.
    made: VecDeque<(SystemTime, Arc<str>)>,
    audit: Audit,
}

impl Ledger {
    fn charge(&self, key: &str) -> Option<&Charge> {
        match self.by_key.get(key) {
            Some(Kept::Charge(charge)) => Some(charge),
            _ => None,
        }
    }

    fn keep(&mut self, at: SystemTime, kept: Kept, retention: Retention) {
        let key: Arc<str> = match &kept {
            Kept::Charge(charge) => {
                let key: Arc<str> = Arc::from(charge.idempotency_key.as_str());
                self.charge_keys
                    .insert(Arc::from(charge.id.as_str()), Arc::clone(&key));
                self.audit.charges += 1;
                if charge.status == ChargeStatus::Succeeded {
                    self.audit.succeeded += 1;
                }
                key
            }
            Kept::Refund(refund) => {
                let refunded_key = self.charge_keys.get(refund.charge.as_str()).cloned();
                if let Some(Kept::Charge(charge)) =
                    refunded_key.and_then(|key| self.by_key.get_mut(&key))
                {
                    charge.refunded = true;
                }
                self.audit.refunds += 1;
                Arc::from(refund.idempotency_key.as_str())
            }
        };
        self.by_key.insert(Arc::clone(&key), kept);
        self.made.push_back((at, key));
        self.forget_old(at, retention);
    }

    /// Drops keys past the window, and the oldest beyond the cap.
    fn forget_old(&mut self, now: SystemTime, retention: Retention) {
        while let Some((made, key)) = self.made.front() {
            let expired = now.duration_since(*made).unwrap_or_default() > retention.window;
            let over_cap = self.made.len() > retention.max_keys;
            if !expired && !over_cap {
                break;
            }
            if !expired {
                self.audit.evicted_early += 1;
            }
            if let Some(Kept::Charge(charge)) = self.by_key.remove(key) {
                self.charge_keys.remove(charge.id.as_str());
            }
            self.made.pop_front();
        }
        self.audit.keys_held = self.made.len() as u64;
    }
}

/// The provider: its behaviour, its ledger of idempotency keys, and optionally a journal
/// on disk that a restarted provider reads back.
pub struct Provider {
    behaviour: Behaviour,
    retention: Retention,
    ledger: Mutex<Ledger>,
    journal: Option<Mutex<Journal>>,
}

impl Provider {
    /// A provider that keeps its ledger in memory only.
    pub fn new(behaviour: Behaviour, retention: Retention) -> Self {
        Self {
            behaviour,
            retention,
            ledger: Mutex::new(Ledger::default()),
            journal: None,
        }
    }

    /// A provider that writes every charge and refund to a journal in `dir`, and starts
    /// from what the journal holds within the window.
    pub fn with_journal(
        behaviour: Behaviour,
        retention: Retention,
        dir: PathBuf,
    ) -> std::io::Result<Self> {
        let (journal, entries) = Journal::open(dir, retention.window)?;
        let mut ledger = Ledger::default();
        for (at, entry) in entries {
            let kept = match entry {
                Entry::Charge(charge) => Kept::Charge(charge),
                Entry::Refund(refund) => Kept::Refund(refund),
            };
            ledger.keep(at, kept, retention);
        }
        Ok(Self {
            behaviour,
            retention,
            ledger: Mutex::new(ledger),
            journal: Some(Mutex::new(journal)),
        })
    }

    pub fn audit(&self) -> Audit {
        self.lock().audit.clone()
    }

    /// Charges a card once per idempotency key: the same key again answers the first
    /// charge (succeeded or declined), whatever happened to the first answer.
    pub async fn charge(&self, key: &str, request: &CreateCharge) -> Result<Charge, ProviderError> {
        self.network().await?;
        let charge = {
            let mut ledger = self.lock();
            match ledger.charge(key) {
                Some(charge)
                    if charge.amount != request.amount
                        || !charge.currency.eq_ignore_ascii_case(&request.currency) =>
                {
                    return Err(ProviderError::KeyReused(key.to_string()));
                }
                Some(charge) => charge.clone(),
                None => {
                    let charge = decide(key, request)?;
                    let at = SystemTime::now();
                    self.write(at, Entry::Charge(charge.clone()));
                    ledger.keep(at, Kept::Charge(charge.clone()), self.retention);
                    charge
                }
            }
        };
        if chance(self.behaviour.lost_response_rate) {
            return Err(ProviderError::AnswerLost);
        }
        Ok(charge)
    }

    /// The charge made under `key`, if one was (and is still within the window).
    pub async fn find_charge(&self, key: &str) -> Result<Option<Charge>, ProviderError> {
        self.network().await?;
        Ok(self.lock().charge(key).cloned())
    }

    /// Refunds a succeeded charge once per idempotency key.
    pub async fn refund(&self, key: &str, request: &CreateRefund) -> Result<Refund, ProviderError> {
        self.network().await?;
        let mut ledger = self.lock();
        if let Some(Kept::Refund(refund)) = ledger.by_key.get(key) {
            return Ok(refund.clone());
        }
        let charged = ledger
            .charge_keys
            .get(request.charge.as_str())
            .and_then(|charge_key| ledger.charge(charge_key))
            .filter(|charge| charge.status == ChargeStatus::Succeeded)
            .map(|charge| charge.amount)
            .ok_or_else(|| ProviderError::UnknownCharge(request.charge.clone()))?;
        if request.amount > charged || request.amount <= 0 {
            return Err(ProviderError::RefundTooLarge {
                requested: request.amount,
                charged,
            });
        }
        let refund = Refund {
            id: derived_id("re", key),
            charge: request.charge.clone(),
            amount: request.amount,
            idempotency_key: key.to_string(),
        };
        let at = SystemTime::now();
        self.write(at, Entry::Refund(refund.clone()));
        ledger.keep(at, Kept::Refund(refund.clone()), self.retention);
        Ok(refund)
    }

    /// The call's latency, then perhaps a simulated outage.
    async fn network(&self) -> Result<(), ProviderError> {
        let latency = self.behaviour.latency.sample();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if chance(self.behaviour.transient_failure_rate) {
            return Err(ProviderError::Unavailable);
        }
        Ok(())
    }

    fn write(&self, at: SystemTime, entry: Entry) {
        if let Some(journal) = &self.journal {
            let mut journal = journal
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Err(error) = journal.append(at, &entry) {
                tracing::error!(%error, "cannot write the journal; a restart will forget this");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What the card's token decides.
fn decide(key: &str, request: &CreateCharge) -> Result<Charge, ProviderError> {
    let (status, failure_code) = match request.source.as_str() {
        TOKEN_APPROVED => (ChargeStatus::Succeeded, None),
        TOKEN_DECLINED => (ChargeStatus::Failed, Some("card_declined".to_string())),
        other => return Err(ProviderError::UnknownToken(other.to_string())),
    };
    Ok(Charge {
        id: derived_id("ch", key),
        status,
        failure_code,
        amount: request.amount,
        currency: request.currency.to_ascii_lowercase(),
        idempotency_key: key.to_string(),
        refunded: false,
    })
}

fn chance(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

/// Ids derived from the idempotency key: the same request always names the same object.
fn derived_id(prefix: &str, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("{prefix}_{}", &hex::encode(digest)[..24])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(source: &str, amount: i64) -> CreateCharge {
        CreateCharge {
            amount,
            currency: "USD".into(),
            source: source.into(),
        }
    }

    fn provider(window: Duration, max_keys: usize) -> Provider {
        Provider::new(Behaviour::default(), Retention { window, max_keys })
    }

    #[tokio::test]
    async fn a_key_charges_once_and_answers_the_same_charge_again() {
        let provider = provider(Duration::from_secs(60), 100);
        let first = provider.charge("k1", &card(TOKEN_APPROVED, 500)).await;
        let again = provider.charge("k1", &card(TOKEN_APPROVED, 500)).await;
        assert_eq!(first, again);
        assert_eq!(provider.audit().charges, 1);
        let reused = provider.charge("k1", &card(TOKEN_APPROVED, 900)).await;
        assert_eq!(reused, Err(ProviderError::KeyReused("k1".into())));
        let declined = provider.charge("k2", &card(TOKEN_DECLINED, 500)).await;
        assert_eq!(declined.map(|c| c.status), Ok(ChargeStatus::Failed));
        assert_eq!(
            provider
                .find_charge("k1")
                .await
                .ok()
                .flatten()
                .map(|c| c.id),
            first.ok().map(|c| c.id)
        );
        assert_eq!(provider.find_charge("nobody").await, Ok(None));
    }

    #[tokio::test]
    async fn memory_is_bounded_by_the_cap_and_the_window() {
        let capped = provider(Duration::from_secs(3600), 3);
        for n in 0..10 {
            let _ = capped
                .charge(&format!("k{n}"), &card(TOKEN_APPROVED, 1))
                .await;
        }
        let audit = capped.audit();
        assert_eq!(
            (audit.keys_held, audit.evicted_early, audit.charges),
            (3, 7, 10)
        );
        assert_eq!(
            capped.find_charge("k0").await,
            Ok(None),
            "the oldest went first"
        );
        assert!(capped.find_charge("k9").await.ok().flatten().is_some());

        let windowed = provider(Duration::ZERO, 100);
        let _ = windowed.charge("a", &card(TOKEN_APPROVED, 1)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _ = windowed.charge("b", &card(TOKEN_APPROVED, 1)).await;
        assert_eq!(windowed.find_charge("a").await, Ok(None), "past its window");
    }

    #[tokio::test]
    async fn a_refund_needs_a_succeeded_charge_and_is_made_once() {
        let provider = provider(Duration::from_secs(60), 100);
        let charge = provider
            .charge("c", &card(TOKEN_APPROVED, 700))
            .await
            .expect("charged");
        let refund = CreateRefund {
            charge: charge.id.clone(),
            amount: 700,
        };
        let first = provider.refund("r", &refund).await;
        assert_eq!(first, provider.refund("r", &refund).await);
        assert_eq!(provider.audit().refunds, 1);
        assert!(provider
            .find_charge("c")
            .await
            .ok()
            .flatten()
            .is_some_and(|c| c.refunded));
        let unknown = CreateRefund {
            charge: "ch_nope".into(),
            amount: 1,
        };
        assert_eq!(
            provider.refund("r2", &unknown).await,
            Err(ProviderError::UnknownCharge("ch_nope".into()))
        );
    }

    #[test]
    fn latency_has_its_median_and_a_long_tail() {
        let latency = Latency {
            median: Duration::from_millis(100),
            p99: Duration::from_millis(400),
        };
        let mut samples: Vec<Duration> = (0..20_000).map(|_| latency.sample()).collect();
        samples.sort();
        let median = samples[samples.len() / 2].as_secs_f64();
        let p99 = samples[samples.len() * 99 / 100].as_secs_f64();
        assert!((0.09..0.11).contains(&median), "median {median}");
        assert!((0.33..0.48).contains(&p99), "p99 {p99}");
        assert_eq!(
            Latency::constant(Duration::from_millis(7)).sample(),
            Duration::from_millis(7)
        );
    }
}
