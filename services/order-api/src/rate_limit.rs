//! A per-client limit on placing orders (`ORDER_RATE_LIMIT` per minute): each order can set
//! off e-mails to any address, so one client must not place them without bound.
//!
//! The limiter is the generic cell rate algorithm: per client it keeps one instant, the
//! "theoretical arrival time", so a client may place a minute's allowance at once and then
//! one every `60 s / limit`. It lives in the API process: with several replicas behind a
//! balancer, each allows the limit (the operator divides it, or puts the limit in the
//! proxy). The client is the socket's peer, or, when that peer is a trusted proxy
//! (`TRUSTED_PROXIES`), the address it forwarded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::HttpRequest;

/// Clients tracked at most. Clients whose allowance is whole again are forgotten first;
/// past this many still limited, new clients go untracked rather than grow the map.
const MAX_TRACKED_CLIENTS: usize = 100_000;

pub struct RateLimiter {
    /// Time between two orders once the burst is spent.
    interval: Duration,
    /// How far ahead of now a client's arrival time may run: the burst.
    tolerance: Duration,
    arrivals: Mutex<HashMap<IpAddr, Instant>>,
}

impl RateLimiter {
    /// `per_minute` orders a minute; `None` when it is 0 (no limit).
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        let interval = Duration::from_secs(60).checked_div(per_minute)?;
        Some(Self {
            interval,
            tolerance: interval * (per_minute - 1),
            arrivals: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one order of `client`, or says how long it must wait.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut arrivals = self
            .arrivals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let arrival = arrivals.get(&client).copied().unwrap_or(now).max(now);
        let ahead = arrival - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        if arrivals.len() >= MAX_TRACKED_CLIENTS && !arrivals.contains_key(&client) {
            arrivals.retain(|_, arrival| *arrival > now);
            if arrivals.len() >= MAX_TRACKED_CLIENTS {
                return Ok(());
            }
        }
        arrivals.insert(client, arrival + self.interval);
        Ok(())
    }
}

/// The client's address: the socket's peer, unless that peer is one of `trusted` proxies;
/// then the right-most address of `X-Forwarded-For` that is not itself a trusted proxy
/// (the left part of the header is whatever the client wrote).
pub fn client_address(req: &HttpRequest, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|hop| hop.trim().parse::<IpAddr>())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|hop| !trusted.contains(hop))
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_allowance_at_once_then_one_per_interval() {
        let limiter = RateLimiter::per_minute(3).expect("a limit");
        let client: IpAddr = [192, 0, 2, 1].into();
        let other: IpAddr = [192, 0, 2, 2].into();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(client, start), Ok(()));
        }
        let wait = limiter.check(client, start).expect_err("the fourth waits");
        assert_eq!(wait, Duration::from_secs(20));
        assert_eq!(limiter.check(other, start), Ok(()), "clients are apart");
        assert_eq!(limiter.check(client, start + wait), Ok(()));
        assert!(limiter.check(client, start + wait).is_err());
    }

    #[test]
    fn zero_is_no_limit() {
        assert!(RateLimiter::per_minute(0).is_none());
    }
}
