//! The provider's journal: every charge and refund, one JSON line each, in one file per
//! hour (`journal-<unix hour>.jsonl`). A restarted provider reads back the files that can
//! still hold keys within the window, and files older than that are deleted, so the disk
//! holds a window of traffic, not all of it.
//!
//! Lines are written (not synced) as each charge is made: they survive the process being
//! killed, not the machine losing power. A real provider's ledger is durable; a simulator
//! run on one machine need not be.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::api::{Charge, Refund};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    Charge(Charge),
    Refund(Refund),
}

#[derive(Serialize, Deserialize)]
struct Line {
    /// Milliseconds since the epoch.
    at_ms: u64,
    #[serde(flatten)]
    entry: Entry,
}

pub struct Journal {
    dir: PathBuf,
    window: Duration,
    hour: u64,
    file: File,
}

const HOUR_SECS: u64 = 3600;

impl Journal {
    /// Opens the journal in `dir` (made if missing) and returns what it holds within the
    /// window, oldest first.
    pub fn open(
        dir: PathBuf,
        window: Duration,
    ) -> std::io::Result<(Self, Vec<(SystemTime, Entry)>)> {
        fs::create_dir_all(&dir)?;
        let now = SystemTime::now();
        let mut entries = Vec::new();
        for (hour, path) in segments(&dir)? {
            if is_expired(hour, now, window) {
                fs::remove_file(&path)?;
                continue;
            }
            read_segment(&path, &mut entries)?;
        }
        entries.sort_by_key(|(at, _)| *at);
        let hour = hour_of(now);
        let file = open_segment(&dir, hour)?;
        Ok((
            Self {
                dir,
                window,
                hour,
                file,
            },
            entries,
        ))
    }

    /// Appends one entry, moving to a new file when the hour has turned (and deleting the
    /// files past the window).
    pub fn append(&mut self, at: SystemTime, entry: &Entry) -> std::io::Result<()> {
        let hour = hour_of(at);
        if hour != self.hour {
            self.file = open_segment(&self.dir, hour)?;
            self.hour = hour;
            for (old, path) in segments(&self.dir)? {
                if is_expired(old, at, self.window) {
                    fs::remove_file(path)?;
                }
            }
        }
        let line = Line {
            at_ms: at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            entry: entry.clone(),
        };
        let mut text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
        text.push('\n');
        // One write per line, to a file opened for appending: whole lines, even if killed.
        self.file.write_all(text.as_bytes())
    }
}

fn hour_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / HOUR_SECS
}

/// A file whose every line is older than the window: its hour ended before the window began.
fn is_expired(hour: u64, now: SystemTime, window: Duration) -> bool {
    (hour + 1) * HOUR_SECS + window.as_secs() < hour_of(now) * HOUR_SECS
}

fn open_segment(dir: &Path, hour: u64) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("journal-{hour}.jsonl")))
}

/// The journal's files with their hours.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let hour = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix("journal-"))
            .and_then(|name| name.strip_suffix(".jsonl"))
            .and_then(|hour| hour.parse().ok());
        if let Some(hour) = hour {
            found.push((hour, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Every entry of every journal file in `dir`, oldest first: for audits of a run.
pub fn read_all(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (_, path) in segments(dir)? {
        read_segment(&path, &mut entries)?;
    }
    entries.sort_by_key(|(at, _)| *at);
    Ok(entries.into_iter().map(|(_, entry)| entry).collect())
}

/// A line cut short by a kill is skipped; any other line must parse.
fn read_segment(path: &Path, into: &mut Vec<(SystemTime, Entry)>) -> std::io::Result<()> {
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(line) => into.push((UNIX_EPOCH + Duration::from_millis(line.at_ms), line.entry)),
            Err(error) => tracing::warn!(path = %path.display(), %error, "skipping a journal line"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ChargeStatus;

    fn charge(key: &str) -> Entry {
        Entry::Charge(Charge {
            id: format!("ch_{key}"),
            status: ChargeStatus::Succeeded,
            failure_code: None,
            amount: 100,
            currency: "usd".into(),
            idempotency_key: key.into(),
            refunded: false,
        })
    }

    #[test]
    fn what_was_written_is_read_back_and_old_files_go() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let window = Duration::from_secs(2 * HOUR_SECS);
        let now = SystemTime::now();
        let (mut journal, found) = Journal::open(dir.path().into(), window).expect("open");
        assert!(found.is_empty());
        journal.append(now, &charge("a")).expect("append");
        journal.append(now, &charge("b")).expect("append");
        // A file from a day ago, past the window.
        let old = hour_of(now) - 24;
        fs::write(dir.path().join(format!("journal-{old}.jsonl")), "").expect("write");
        drop(journal);

        let (_, found) = Journal::open(dir.path().into(), window).expect("reopen");
        let keys: Vec<String> = found
            .into_iter()
            .filter_map(|(_, entry)| match entry {
                Entry::Charge(charge) => Some(charge.idempotency_key),
                Entry::Refund(_) => None,
            })
            .collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(
            segments(dir.path()).expect("list").len(),
            1,
            "the old file is gone"
        );
    }
}
