//! The operator commands of `order-api`, run as the real binary against a database after
//! a real run: readable tables of the queue, dead tasks, a retry, an order's timeline.

use orderflow::tasks::RefundArgs;
use std::process::Output;
use std::time::Duration;

use orderflow_queue::{claim_batch, enqueue, fail, TaskArgs, TaskError};
use orderflow_tests::processes::binary;
use orderflow_tests::{SmtpServer, TestApp, TestDb, Workers};
use uuid::Uuid;

async fn order_api(db: &TestDb, args: &[&str]) -> Output {
    tokio::process::Command::new(binary("order-api"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap_or_else(|e| panic!("order-api {args:?}: {e}"))
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_see_the_queue_dead_tasks_and_a_timeline_and_can_retry() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let workers = Workers::builder(&db, &smtp.url()).spawn();
    let product = app.create_product("OPS-1", 700, 5).await;
    let order_id = app.place_order_id("tok_visa", &[(&product, 1)]).await;
    app.wait_until_event(&order_id, "fulfilled").await;
    workers.stop().await;

    // A refund task for an order that does not exist, failed permanently: dead.
    let mut conn = db.connect().await;
    let ghost = Uuid::now_v7();
    enqueue(&mut conn, &RefundArgs { order_id: ghost }.to_task())
        .await
        .expect("refund payment");
    let claimed = claim_batch(&mut conn, "payment.refund", 1, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    let error = TaskError::permanent("gateway: unknown charge");
    let _ = fail(&mut conn, &claimed[0], &error, Duration::ZERO).await;
    let dead_id = claimed[0].id.to_string();

    let queue = stdout(&order_api(&db, &["queue"]).await);
    let lines: Vec<&str> = queue.lines().collect();
    assert!(lines[0].starts_with("KIND"), "{queue}");
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..3]
                == ["payment.charge", "completed", "1"]),
        "{queue}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()[..3]
                == ["payment.refund", "dead", "1"]),
        "{queue}"
    );

    let dead = stdout(&order_api(&db, &["dead-tasks"]).await);
    let row = dead
        .lines()
        .find(|line| line.starts_with(&dead_id))
        .unwrap_or_else(|| panic!("task {dead_id} missing from:\n{dead}"));
    assert!(
        row.contains(&ghost.to_string()) && row.contains("unknown charge"),
        "{row}"
    );

    assert!(stdout(&order_api(&db, &["retry-task", &dead_id]).await).contains("waiting again"));
    let again = order_api(&db, &["retry-task", &dead_id]).await;
    assert!(!again.status.success(), "only a dead task can be retried");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not dead"));

    let timeline = stdout(&order_api(&db, &["timeline", &order_id, "--follow"]).await);
    assert!(
        timeline.starts_with(&format!("order {order_id}  fulfilled")),
        "{timeline}"
    );
    let events: Vec<&str> = timeline
        .lines()
        .skip(2)
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        events,
        ["placed", "paid", "reserved", "shipped", "fulfilled"],
        "{timeline}"
    );

    let unknown = order_api(&db, &["timeline", &Uuid::now_v7().to_string()]).await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("does not exist"));
}

/// A violation planted in a clean database, and the statement that takes it out again.
struct Planted {
    invariant: &'static str,
    plant: String,
    undo: String,
    /// What the checker's report says about it.
    reported: String,
}

async fn execute(conn: &mut diesel_async::AsyncPgConnection, sql: &str) {
    use diesel_async::RunQueryDsl;
    let changed = diesel::sql_query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(changed, 1, "{sql} changed {changed} rows");
}

/// Every "the invariants hold" test relies on the checker; this one makes sure it sees a
/// broken invariant. One violation per invariant is planted in a database where they all
/// hold; the report names it, and `order-api check-invariants` exits non-zero on it.
#[tokio::test(flavor = "multi_thread")]
async fn the_invariant_checker_reports_each_planted_violation() {
    use orderflow_tests::invariants::check;
    use std::collections::HashMap;

    let db = TestDb::new().await;
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn(&db).await;
    let workers = Workers::builder(&db, &smtp.url()).spawn();
    let product = app.create_product("INV-1", 700, 5).await;
    let fulfilled = app.place_order_id("tok_visa", &[(&product, 2)]).await;
    let declined = app
        .place_order_id("tok_chargeDeclined", &[(&product, 1)])
        .await;
    app.wait_until_event(&fulfilled, "fulfilled").await;
    app.wait_until_event(&declined, "notified").await;
    workers.stop().await;
    let received = orderflow_tests::wait_until(
        "both e-mails at the SMTP server",
        Duration::from_secs(20),
        || async { Some(smtp.messages()).filter(|messages| messages.len() == 2) },
    )
    .await;

    let product_id: Uuid = product.parse().expect("a product id");
    let initial_stock = HashMap::from([(product_id, 5)]);
    let stock_file = std::env::temp_dir().join(format!("{}-initial-stock.json", db.name));
    std::fs::write(&stock_file, format!("{{\"{product_id}\": 5}}")).expect("stock file written");
    let stock_arg = stock_file.to_string_lossy().into_owned();
    let mut conn = db.connect().await;

    let clean = check(&mut conn, &initial_stock, Some(&received)).await;
    assert_eq!(clean.violations, Vec::<String>::new(), "{clean:?}");
    assert_eq!((clean.fulfilled, clean.cancelled), (1, 1));
    let command = order_api(&db, &["check-invariants", &stock_arg]).await;
    assert!(command.status.success(), "{command:?}");

    let cases = [
        Planted {
            invariant: "1: every accepted order is terminal",
            plant: format!("UPDATE orders SET status = 'reserved' WHERE id = '{fulfilled}'"),
            undo: format!("UPDATE orders SET status = 'fulfilled' WHERE id = '{fulfilled}'"),
            reported: format!("order {fulfilled} is still reserved"),
        },
        Planted {
            invariant: "2: stock taken = units in fulfilled or reserved orders",
            plant: format!("UPDATE products SET stock = stock - 1 WHERE id = '{product}'"),
            undo: format!("UPDATE products SET stock = stock + 1 WHERE id = '{product}'"),
            reported: format!("product {product}: 3 units left the shelf, orders hold 2"),
        },
        Planted {
            invariant: "3: a fulfilled order has one captured payment of its total",
            plant: format!(
                "UPDATE payments SET amount_cents = amount_cents + 1 WHERE order_id = '{fulfilled}'"
            ),
            undo: format!(
                "UPDATE payments SET amount_cents = amount_cents - 1 WHERE order_id = '{fulfilled}'"
            ),
            reported: format!("fulfilled order {fulfilled} has payment"),
        },
        Planted {
            invariant: "3: a cancelled order keeps no captured money",
            plant: format!("UPDATE payments SET status = 'captured' WHERE order_id = '{declined}'"),
            undo: format!("UPDATE payments SET status = 'declined' WHERE order_id = '{declined}'"),
            reported: format!("cancelled order {declined} keeps a captured payment"),
        },
        Planted {
            invariant: "4: every terminal order has its e-mail",
            plant: format!(
                "UPDATE sent_emails SET kind = 'order_cancelled' WHERE order_id = '{fulfilled}'"
            ),
            undo: format!(
                "UPDATE sent_emails SET kind = 'order_confirmed' WHERE order_id = '{fulfilled}'"
            ),
            reported: format!("fulfilled order {fulfilled} has no recorded order_confirmed e-mail"),
        },
        Planted {
            invariant: "5: no task is lost",
            plant:
                "INSERT INTO tasks (kind, max_attempts, state) VALUES ('payment.refund', 1, 'dead')"
                    .to_string(),
            undo: "DELETE FROM tasks WHERE state = 'dead'".to_string(),
            reported: "1 dead task(s) of kind payment.refund".to_string(),
        },
    ];
    for case in &cases {
        execute(&mut conn, &case.plant).await;
        let report = check(&mut conn, &initial_stock, Some(&received)).await;
        assert!(
            report.violations.iter().any(|v| v.contains(&case.reported)),
            "invariant {}: {:?} does not report {:?}",
            case.invariant,
            report.violations,
            case.reported
        );
        let command = order_api(&db, &["check-invariants", &stock_arg]).await;
        assert!(
            !command.status.success(),
            "check-invariants passed with invariant {} broken",
            case.invariant
        );
        assert!(
            String::from_utf8_lossy(&command.stdout).contains(&case.reported),
            "{command:?}"
        );
        execute(&mut conn, &case.undo).await;
    }

    // Invariant 4 with the SMTP server's side: an e-mail that never arrived, and one that
    // arrived with a Message-ID no notification has (a resend must reuse the order's).
    let confirmation = orderflow::email::message_id(
        fulfilled.parse().expect("an order id"),
        orderflow::status::NotificationKind::OrderConfirmed,
    );
    let (lost, arrived): (Vec<String>, Vec<String>) = received
        .iter()
        .cloned()
        .partition(|message| message.contains(&confirmation));
    assert_eq!(lost.len(), 1, "the confirmation is among the received");
    let report = check(&mut conn, &initial_stock, Some(&arrived)).await;
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains(&format!("{fulfilled}: no order_confirmed e-mail reached"))),
        "{:?}",
        report.violations
    );
    let stray = lost[0].replace(&confirmation, "<resent-with-a-new-id@orderflow.example>");
    let with_stray: Vec<String> = received.iter().cloned().chain([stray]).collect();
    let report = check(&mut conn, &initial_stock, Some(&with_stray)).await;
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("belongs to no terminal order's notification")),
        "{:?}",
        report.violations
    );

    let clean = check(&mut conn, &initial_stock, Some(&received)).await;
    assert_eq!(clean.violations, Vec::<String>::new(), "all undone");
    let _ = std::fs::remove_file(stock_file);
}
