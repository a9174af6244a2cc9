//! The payment worker's HTTP client against the real `gateway-sim` process: idempotency
//! keys on the wire, lookups, refunds, and errors classed as the queue needs them
//! (no connection, timeouts and 5xx transient; 4xx permanent).

use std::time::Duration;

use orderflow::payment::{
    ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest,
};
use orderflow_runtime::config::{PaymentConfig, Secret};
use orderflow_tests::processes::Service;
use orderflow_tests::smtp::free_port;
use orderflow_tests::wait_until;
use payment_worker::http_gateway::HttpGateway;

/// `gateway-sim` on a free port with these settings; its URL.
async fn start_provider(env: &[(&str, &str)]) -> (Service, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let logs = std::env::temp_dir().join(format!("gateway-sim-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("a folder for the logs");
    let mut vars: Vec<(&str, String)> = vec![("GATEWAY_ADDR", addr.clone())];
    vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
    let service = Service::start("gateway-sim", "gateway-sim", &vars, &logs);
    let url = format!("http://{addr}");
    let health = format!("{url}/healthz");
    wait_until("gateway-sim to answer", Duration::from_secs(30), || async {
        reqwest::get(&health)
            .await
            .ok()?
            .status()
            .is_success()
            .then_some(())
    })
    .await;
    (service, url)
}

fn client(url: &str, timeout: Duration, api_key: Option<&str>) -> HttpGateway {
    let config = PaymentConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: timeout,
        gateway_api_key: api_key.map(|key| Secret::new(key.into())),
        ..PaymentConfig::default()
    };
    HttpGateway::new(url, &config).expect("an HTTP gateway client")
}

fn charge(key: &str, token: &str) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: key.into(),
        token: token.into(),
        amount_cents: 1999,
        currency: "USD".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn charges_lookups_and_refunds_over_http_are_idempotent() {
    let (_provider, url) = start_provider(&[("GATEWAY_API_KEY", "sk_test_0123456789")]).await;
    let gateway = client(&url, Duration::from_secs(5), Some("sk_test_0123456789"));

    let approved = gateway.charge(&charge("order-1-charge", "tok_visa")).await;
    let Ok(ChargeOutcome::Approved { charge_id }) = approved.clone() else {
        panic!("{approved:?}");
    };
    assert_eq!(
        gateway.charge(&charge("order-1-charge", "tok_visa")).await,
        approved
    );
    assert_eq!(
        gateway.find_charge("order-1-charge").await,
        Ok(approved.ok())
    );
    assert_eq!(gateway.find_charge("order-2-charge").await, Ok(None));
    let declined = gateway
        .charge(&charge("order-2-charge", "tok_chargeDeclined"))
        .await;
    assert!(
        matches!(declined, Ok(ChargeOutcome::Declined { ref reason }) if reason == "card_declined"),
        "{declined:?}"
    );

    let refund = |charge_id: &str| RefundRequest {
        idempotency_key: "order-1-refund".into(),
        charge_id: charge_id.into(),
        amount_cents: 1999,
    };
    let refunded = gateway.refund(&refund(&charge_id)).await;
    assert!(refunded.is_ok(), "{refunded:?}");
    assert_eq!(
        gateway.refund(&refund(&charge_id)).await,
        refunded,
        "once per key"
    );

    // The request itself is wrong: permanent, a retry cannot help.
    let unknown = RefundRequest {
        idempotency_key: "order-3-refund".into(),
        charge_id: "ch_unknown".into(),
        amount_cents: 1,
    };
    assert!(matches!(
        gateway.refund(&unknown).await,
        Err(GatewayError::Rejected(_))
    ));
    let reused = ChargeRequest {
        amount_cents: 5,
        ..charge("order-1-charge", "tok_visa")
    };
    assert!(matches!(
        gateway.charge(&reused).await,
        Err(GatewayError::Rejected(_))
    ));
    let wrong_key = client(&url, Duration::from_secs(5), Some("sk_test_wrong"));
    assert!(matches!(
        wrong_key
            .charge(&charge("order-4-charge", "tok_visa"))
            .await,
        Err(GatewayError::Rejected(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn outages_timeouts_and_lost_answers_are_transient_and_a_lost_charge_is_found() {
    // Nobody listens: transient.
    let nowhere = client(
        &format!("http://127.0.0.1:{}", free_port()),
        Duration::from_secs(2),
        None,
    );
    assert!(matches!(
        nowhere.charge(&charge("k", "tok_visa")).await,
        Err(GatewayError::Transient(_))
    ));

    // Slower than the client waits: transient.
    let (_slow, slow_url) = start_provider(&[("GATEWAY_LATENCY_P50_MS", "3000")]).await;
    let impatient = client(&slow_url, Duration::from_millis(300), None);
    assert!(matches!(
        impatient.charge(&charge("k", "tok_visa")).await,
        Err(GatewayError::Transient(_))
    ));

    // Down (503): transient, and nothing was charged.
    let (_down, down_url) = start_provider(&[("GATEWAY_TRANSIENT_FAILURE_RATE", "1")]).await;
    let gateway = client(&down_url, Duration::from_secs(5), None);
    assert!(matches!(
        gateway.charge(&charge("k", "tok_visa")).await,
        Err(GatewayError::Transient(_))
    ));

    // The answer lost after the charge (504): transient, and the lookup finds the charge.
    let (_lossy, lossy_url) = start_provider(&[("GATEWAY_LOST_RESPONSE_RATE", "1")]).await;
    let gateway = client(&lossy_url, Duration::from_secs(5), None);
    assert!(matches!(
        gateway.charge(&charge("order-9-charge", "tok_visa")).await,
        Err(GatewayError::Transient(_))
    ));
    assert!(matches!(
        gateway.find_charge("order-9-charge").await,
        Ok(Some(ChargeOutcome::Approved { .. }))
    ));
}
