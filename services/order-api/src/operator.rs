//! Operator commands on the command line (`order-api queue | dead-tasks | retry-task |
//! timeline`), reading PostgreSQL directly: they work when the API is down, and need the
//! database credentials rather than the admin token.

use std::fmt::Write as _;
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use orderflow::status::EventType;
use orderflow::views;
use orderflow_queue::admin;
use uuid::Uuid;

pub type CommandError = Box<dyn std::error::Error>;

/// Columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  ").trim_end());
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |s| format!("{s:.1}s"))
}

/// Task counts by kind and state, the oldest waiting age, tasks past their lease.
pub async fn queue(conn: &mut AsyncPgConnection) -> Result<String, CommandError> {
    let rows: Vec<Vec<String>> = admin::overview(conn)
        .await?
        .into_iter()
        .map(|row| {
            vec![
                row.kind,
                row.state.clone(),
                row.count.to_string(),
                if row.state == "waiting" {
                    seconds(row.oldest_age_seconds)
                } else {
                    "-".into()
                },
                row.past_lease.to_string(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return Ok("no tasks\n".into());
    }
    Ok(table(
        &["KIND", "STATE", "COUNT", "OLDEST WAITING", "PAST LEASE"],
        &rows,
    ))
}

/// The most recent dead tasks with their last error.
pub async fn dead_tasks(conn: &mut AsyncPgConnection, limit: i64) -> Result<String, CommandError> {
    let rows: Vec<Vec<String>> = admin::dead_tasks(conn, &admin::DeadFilter::default(), limit)
        .await?
        .into_iter()
        .map(|task| {
            let subject = task
                .payload
                .get("order_id")
                .and_then(|id| id.as_str())
                .unwrap_or("-");
            vec![
                task.id.to_string(),
                task.kind,
                subject.to_string(),
                task.attempts.to_string(),
                task.died_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                task.last_error.unwrap_or_default(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return Ok("no dead tasks\n".into());
    }
    Ok(table(
        &[
            "ID",
            "KIND",
            "ORDER",
            "ATTEMPTS",
            "DIED (UTC)",
            "LAST ERROR",
        ],
        &rows,
    ))
}

pub async fn retry_task(conn: &mut AsyncPgConnection, id: i64) -> Result<String, CommandError> {
    if admin::retry_dead(conn, id).await? {
        Ok(format!(
            "task {id} is waiting again with a fresh set of attempts\n"
        ))
    } else {
        Err(format!("task {id} does not exist or is not dead").into())
    }
}

/// The order's status and its timeline; with `follow`, new events are printed as they
/// come until the order is terminal.
pub async fn timeline(
    conn: &mut AsyncPgConnection,
    order_id: Uuid,
    follow: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), CommandError> {
    let mut shown = 0;
    loop {
        let order = views::load_order(conn, order_id)
            .await?
            .ok_or_else(|| format!("order {order_id} does not exist"))?;
        if shown == 0 {
            let payment = order.payment.as_ref().map_or("none".to_string(), |p| {
                format!("{} {} cents", p.status, p.amount_cents)
            });
            writeln!(
                out,
                "order {}  {}{}  total {} {}  payment {}",
                order.id,
                order.status,
                order
                    .cancel_reason
                    .map(|reason| format!(" ({reason})"))
                    .unwrap_or_default(),
                order.total_cents,
                order.currency,
                payment
            )?;
        }
        let rows: Vec<Vec<String>> = order.events[shown..]
            .iter()
            .map(|event| {
                vec![
                    event.at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                    event.event_type.clone(),
                    serde_json::Value::Object(event.details.clone()).to_string(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            let text = table(&["AT (UTC)", "EVENT", "DETAILS"], &rows);
            // The header once, then only the new rows.
            let text = if shown == 0 {
                text.as_str()
            } else {
                text.split_once('\n').map_or("", |(_, rest)| rest)
            };
            write!(out, "{text}")?;
            out.flush()?;
        }
        shown = order.events.len();
        let finished = order.events.iter().any(|e| {
            matches!(
                EventType::parse(&e.event_type),
                Some(EventType::Fulfilled | EventType::Notified | EventType::NotificationFailed)
            )
        });
        if !follow || finished {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
