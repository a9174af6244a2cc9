//! The HTTP client of the tests: every request has a deadline, so a service that stops
//! answering fails its test instead of stalling the suite.

use std::time::Duration;

/// Longer than any answer or event stream a test waits for.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("the HTTP client's settings are valid")
}
