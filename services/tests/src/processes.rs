//! The real binaries as child processes.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// `target/<profile>/`, where `cargo build --bins` put the service binaries.
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
}

pub fn binary(name: &str) -> PathBuf {
    let path = binary_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --bins; scripts/test.sh does)",
        path.display()
    );
    path
}

/// A running service, killed when dropped.
pub struct Service {
    pub name: String,
    child: Child,
}

impl Service {
    /// Starts `name` with `env`, logging to `<log_dir>/<label>.log`.
    pub fn start(
        name: &str,
        label: &str,
        env: &[(&str, String)],
        log_dir: &std::path::Path,
    ) -> Self {
        let log = File::create(log_dir.join(format!("{label}.log"))).expect("log file");
        let err = log.try_clone().expect("log file");
        let mut command = Command::new(binary(name));
        command.env_clear();
        for key in ["PATH", "HOME"] {
            if let Ok(value) = std::env::var(key) {
                command.env(key, value);
            }
        }
        command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: label.to_string(),
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "kill -{signal} {}",
            self.name
        );
    }

    /// Sends SIGTERM and waits up to `grace` for the exit status.
    pub async fn terminate(mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        let deadline = std::time::Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
