//! The operator commands of `order-api`, run as the real binary against a database after
//! a real run: readable tables of the queue, dead tasks, a retry, an order's timeline.

use std::process::Output;
use std::time::Duration;

use orderflow::tasks;
use orderflow_queue::{claim_batch, enqueue, fail, TaskError};
use orderflow_tests::processes::binary;
use orderflow_tests::{spawn_app, spawn_workers, SmtpServer, TestDb};
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
    let app = spawn_app(&db).await;
    let workers = spawn_workers(&db, &smtp.url(), 1);
    let product = app.create_product("OPS-1", 700, 5).await;
    let order_id = app.place_order_id("tok_visa", &[(&product, 1)]).await;
    app.wait_until_event(&order_id, "fulfilled").await;
    workers.stop().await;

    // A refund task for an order that does not exist, failed permanently: dead.
    let mut conn = db.connect().await;
    let ghost = Uuid::now_v7();
    enqueue(&mut conn, &tasks::refund_payment(ghost))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
        ["placed", "paid", "reserved", "fulfilled"],
        "{timeline}"
    );

    let unknown = order_api(&db, &["timeline", &Uuid::now_v7().to_string()]).await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("does not exist"));
}
