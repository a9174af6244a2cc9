//! A real SMTP server process (Python's aiosmtpd) that stores each message in a Maildir,
//! and refuses for good every recipient whose local part starts with `bounce`
//! (`services/tests/python/smtp_policy.py`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct SmtpServer {
    pub port: u16,
    pub maildir: PathBuf,
    child: Child,
}

/// The Python that has aiosmtpd: `ORDERFLOW_TEST_PYTHON`, else the project's `.venv`
/// (both set up by scripts/test.sh), else `python3`.
fn python() -> String {
    if let Ok(python) = std::env::var("ORDERFLOW_TEST_PYTHON") {
        return python;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() {
        return venv.to_string_lossy().into_owned();
    }
    "python3".into()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free port")
}

impl SmtpServer {
    pub async fn start() -> Self {
        let port = free_port();
        let maildir = std::env::temp_dir().join(format!(
            "orderflow-maildir-{}",
            uuid::Uuid::new_v4().simple()
        ));
        Self::start_on(port, maildir).await
    }

    /// Starts (or restarts) a server on a given port and Maildir.
    pub async fn start_on(port: u16, maildir: PathBuf) -> Self {
        let mut child = Command::new(python())
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "smtp_policy.RefusingMailbox",
            ])
            .arg(&maildir)
            .env(
                "PYTHONPATH",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("python"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start aiosmtpd with {} ({e}); run scripts/test.sh",
                    python()
                )
            });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "aiosmtpd ({}) exited with {status}; run the tests through scripts/test.sh",
                    python()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the SMTP server did not listen within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            port,
            maildir,
            child,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as raw text.
    pub fn messages(&self) -> Vec<String> {
        read_maildir(&self.maildir)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn read_maildir(maildir: &Path) -> Vec<String> {
    ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flat_map(|entries| entries.flatten())
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .collect()
}

/// The value of a header in a raw message (first occurrence, unfolded).
pub fn header(message: &str, name: &str) -> Option<String> {
    orderflow::email::header_value(message, name)
}
