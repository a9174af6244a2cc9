//! E-mail delivery is at-least-once with a stable identity: a send whose completion could
//! not commit is sent again with the same Message-ID, and recorded once.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use notification_worker::SendNotification;
use orderflow::schema::{orders, sent_emails};
use orderflow::status::NotificationKind;
use orderflow::tasks::{NotifyArgs, TaskKind};
use orderflow_queue::{claim_batch, enqueue, rescue_expired, run_once, TaskArgs, TaskError};
use orderflow_runtime::config::{MailConfig, Secret};
use orderflow_runtime::mailer::Mailer;
use orderflow_tests::smtp::header;
use orderflow_tests::Workers;
use orderflow_tests::{wait_until, SmtpServer, TestApp, TestDb};

#[tokio::test(flavor = "multi_thread")]
async fn a_resend_after_a_lost_completion_carries_the_same_message_id_and_is_recorded_once() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let placed = app.place_order_id("tok_visa", &[(&mug, 1)]).await;
    let order_id = uuid::Uuid::parse_str(&placed).unwrap_or_default();

    // The order as the inventory step leaves it, with its confirmation task enqueued.
    let mut conn = db.connect().await;
    diesel::update(orders::table.find(order_id))
        .set(orders::status.eq("reserved"))
        .execute(&mut conn)
        .await
        .expect("the statement runs");
    enqueue(
        &mut conn,
        &NotifyArgs {
            order_id,
            notification: NotificationKind::OrderConfirmed,
        }
        .to_task(),
    )
    .await
    .expect("send notification");

    let mail = MailConfig {
        smtp_url: Some(Secret::new(smtp.url())),
        mail_dir: std::env::temp_dir(),
        from: "Orderflow <orders@orderflow.example>"
            .parse()
            .expect("a valid literal"),
        public_url: "http://shop.test".into(),
    };
    let pool = db.pool(2);
    let handler = SendNotification::new(
        pool.clone(),
        Mailer::from_config(&mail).expect("a mailer"),
        mail.letterhead(),
    );
    let kind = TaskKind::NotificationSend.as_str();

    // First attempt: the lease is already over, so the e-mail goes out but the
    // completion cannot commit (as if the worker died right after sending).
    let lost = claim_batch(&mut conn, kind, 1, Duration::ZERO)
        .await
        .unwrap_or_default();
    assert_eq!(lost.len(), 1);
    let outcome = run_once(&handler, &pool, &lost[0]).await;
    assert!(matches!(outcome, Err(TaskError::ClaimLost)), "{outcome:?}");
    let status: String = orders::table
        .find(order_id)
        .select(orders::status)
        .first(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(status, "reserved", "nothing committed");

    // The task is claimed again and this time completes.
    // A worker's poll tick makes the expired task waiting again.
    assert_eq!(rescue_expired(&mut conn, kind, 10).await.ok(), Some(1));
    let retry = claim_batch(&mut conn, kind, 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert_eq!(retry.len(), 1);
    assert!(run_once(&handler, &pool, &retry[0]).await.is_ok());

    let messages = wait_until("both sends to arrive", Duration::from_secs(10), || async {
        let messages = smtp.messages();
        (messages.len() == 2).then_some(messages)
    })
    .await;
    let ids: Vec<Option<String>> = messages.iter().map(|m| header(m, "Message-ID")).collect();
    let expected = format!("<{order_id}.order_confirmed@orderflow.example>");
    assert_eq!(ids, [Some(expected.clone()), Some(expected)]);
    // The e-mail links to the order's page with the token that opens it (quoted-printable
    // wraps long lines: undo its soft breaks first).
    let link = format!(
        "http://shop.test/track/{order_id}#token={}",
        app.token_of(&placed)
    );
    for message in &messages {
        let body = message
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        assert!(body.contains(&link), "no link to the order in {message}");
        assert_eq!(header(message, "X-Order-Id"), Some(order_id.to_string()));
        assert_eq!(
            header(message, "X-Notification-Kind").as_deref(),
            Some("order_confirmed")
        );
    }
    let recorded: i64 = sent_emails::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap_or(-1);
    assert_eq!(recorded, 1);
    let order = app.order(&placed).await;
    assert_eq!(order["status"], "fulfilled");
    let fulfilled_events = order["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["type"] == "fulfilled").count());
    assert_eq!(fulfilled_events, Some(1));
}

/// One group of sent e-mails, recorded set-wise: a confirmation that fulfils its order, the
/// same confirmation again, a cancellation e-mail, and an e-mail recorded before. Each gets
/// what it would have got alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_of_sent_emails_is_recorded_as_each_would_be_alone() {
    use orderflow::lifecycle::{record_emails_sent, Recorded, SentEmail};
    use orderflow::schema::order_events;

    let db = TestDb::new().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = app.place_order_id("tok_visa", &[(&mug, 1)]).await;
        ids.push(id.parse::<uuid::Uuid>().expect("a valid literal"));
    }
    let (confirmed, cancelled, earlier) = (ids[0], ids[1], ids[2]);
    let mut conn = db.connect().await;
    // No workers run: the test stands in for the steps before the e-mail.
    diesel::update(orders::table.filter(orders::id.eq_any([confirmed, earlier])))
        .set(orders::status.eq("reserved"))
        .execute(&mut conn)
        .await
        .expect("the statement runs");
    diesel::update(orders::table.find(cancelled))
        .set((
            orders::status.eq("cancelled"),
            orders::cancel_reason.eq("payment_declined"),
        ))
        .execute(&mut conn)
        .await
        .expect("the statement runs");
    let message_ids: std::collections::HashMap<(uuid::Uuid, NotificationKind), String> = ids
        .iter()
        .flat_map(|id| {
            [
                NotificationKind::OrderConfirmed,
                NotificationKind::OrderCancelled,
            ]
            .map(|kind| ((*id, kind), orderflow::email::message_id(*id, kind)))
        })
        .collect();
    let email = |order_id, kind| SentEmail {
        order_id,
        kind,
        message_id: &message_ids[&(order_id, kind)],
        recipient: "ada@example.com",
        started_at: chrono::Utc::now(),
    };
    let before = record_emails_sent(
        &mut conn,
        &[email(earlier, NotificationKind::OrderConfirmed)],
    )
    .await
    .expect("record emails sent");
    assert_eq!(before, [Recorded::Applied]);

    let recorded = record_emails_sent(
        &mut conn,
        &[
            email(confirmed, NotificationKind::OrderConfirmed),
            email(confirmed, NotificationKind::OrderConfirmed),
            email(cancelled, NotificationKind::OrderCancelled),
            email(earlier, NotificationKind::OrderConfirmed),
        ],
    )
    .await
    .expect("record emails sent");
    assert_eq!(
        recorded,
        [
            Recorded::Applied,
            Recorded::AlreadyDone,
            Recorded::Applied,
            Recorded::AlreadyDone,
        ]
    );
    let statuses: Vec<(uuid::Uuid, String)> = orders::table
        .filter(orders::id.eq_any(&ids))
        .select((orders::id, orders::status))
        .load(&mut conn)
        .await
        .unwrap_or_default();
    for (id, status) in &statuses {
        let expected = if *id == cancelled {
            "cancelled"
        } else {
            "fulfilled"
        };
        assert_eq!(status, expected, "order {id}");
    }
    let events: Vec<(uuid::Uuid, String)> = order_events::table
        .filter(order_events::event_type.ne("placed"))
        .order(order_events::id)
        .select((order_events::order_id, order_events::event_type))
        .load(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(
        events,
        [
            (earlier, "fulfilled".to_string()),
            (confirmed, "fulfilled".to_string()),
            (cancelled, "notified".to_string()),
        ]
    );
    let sent: i64 = sent_emails::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap_or(-1);
    assert_eq!(sent, 3);
}

/// An address the SMTP server refuses for good: the order still reaches its terminal
/// status, with the refusal on its timeline, and the task completes (it is not dead).
#[tokio::test(flavor = "multi_thread")]
async fn an_undeliverable_email_never_keeps_an_order_from_its_terminal_status() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let mug = app.create_product("MUG", 1000, 10).await;
    let workers = Workers::builder(&db, &smtp.url()).spawn();
    let mut placed = Vec::new();
    for card in ["tok_visa", "tok_chargeDeclined"] {
        let mut body = orderflow_tests::app::order_body(card, &[(&mug, 1)]);
        body["customer"]["email"] = "bounce@example.com".into();
        let response = app.post_json("/orders", &body).await;
        assert_eq!(response.status(), 202);
        let order: serde_json::Value = response.json().await.unwrap_or_default();
        app.remember_token(&order);
        placed.push(order["id"].as_str().unwrap_or_default().to_string());
    }
    let confirmed = app
        .wait_until_event(&placed[0], "notification_failed")
        .await;
    let cancelled = app
        .wait_until_event(&placed[1], "notification_failed")
        .await;
    assert_eq!(confirmed["status"], "fulfilled");
    assert_eq!(cancelled["status"], "cancelled");
    for (order, kind) in [
        (&confirmed, "order_confirmed"),
        (&cancelled, "order_cancelled"),
    ] {
        let events = order["events"].as_array().cloned().unwrap_or_default();
        let failure = events
            .iter()
            .find(|e| e["type"] == "notification_failed")
            .cloned()
            .unwrap_or_default();
        assert_eq!(failure["notification"], kind);
        assert!(
            failure["error"]
                .as_str()
                .unwrap_or_default()
                .contains("550"),
            "the server's refusal is kept: {failure}"
        );
        assert!(!events.iter().any(|e| e["type"] == "task_dead"));
    }
    workers.stop().await;
    assert!(smtp.messages().is_empty(), "nothing was delivered");
    let mut conn = db.connect().await;
    let report = orderflow::invariants::check(&mut conn, &Default::default(), Some(&[]))
        .await
        .expect("the invariant check runs");
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.undeliverable_emails, 2);
}
