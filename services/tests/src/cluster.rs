//! A private PostgreSQL cluster that a test starts on a free port from the system's
//! binaries, so that it can crash and restart the database under a running system.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::smtp::free_port;
use crate::wait_until;

pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// initdb refuses to run as root: then the cluster belongs to `postgres`.
    owner: Option<&'static str>,
    /// Server settings beyond the defaults, kept across restarts.
    settings: Vec<(&'static str, &'static str)>,
}

impl PgCluster {
    /// Creates and starts a cluster (trust auth, user `postgres`) under the temp folder.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// As [`Self::start`], the server run with these settings (`-c name=value`), also
    /// when it is started again after a crash.
    pub async fn start_with(settings: &[(&'static str, &'static str)]) -> Self {
        let bin = server_binaries();
        let dir =
            std::env::temp_dir().join(format!("orderflow-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let owner = is_root().then_some("postgres");
        let cluster = Self {
            port: free_port(),
            dir,
            bin,
            owner,
            settings: settings.to_vec(),
        };
        if let Some(owner) = owner {
            cluster
                .run(
                    "chown",
                    &["-R", owner, &cluster.dir.to_string_lossy()],
                    false,
                )
                .await;
        }
        let data = cluster.data_dir();
        cluster
            .run(
                &cluster.bin.join("initdb").to_string_lossy(),
                &[
                    "-D",
                    &data,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ],
                true,
            )
            .await;
        cluster.start_server().await;
        cluster
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn create_database(&self, name: &str) {
        let mut conn = AsyncPgConnection::establish(&self.url("postgres"))
            .await
            .expect("connect to the test cluster");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    }

    /// Kills the server the way a crash would (no shutdown checkpoint; recovery replays
    /// the WAL at the next start).
    pub async fn crash(&self) {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"]).await;
    }

    pub async fn start_server(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.display()
        );
        for (name, value) in &self.settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        let log = self.dir.join("postgres.log");
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            &log.to_string_lossy(),
            "-o",
            &options,
        ])
        .await;
        let url = self.url("postgres");
        wait_until(
            "the test cluster to accept connections",
            Duration::from_secs(30),
            || async { AsyncPgConnection::establish(&url).await.ok().map(|_| ()) },
        )
        .await;
    }

    fn data_dir(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    async fn pg_ctl(&self, args: &[&str]) {
        let data = self.data_dir();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.run(&self.bin.join("pg_ctl").to_string_lossy(), &all, true)
            .await;
    }

    /// Runs a command (as the cluster's owner when `as_owner`) and panics unless it succeeds.
    async fn run(&self, program: &str, args: &[&str], as_owner: bool) {
        let mut command = match self.owner.filter(|_| as_owner) {
            Some(owner) => {
                let mut command = tokio::process::Command::new("runuser");
                command.args(["-u", owner, "--", program]);
                command
            }
            None => tokio::process::Command::new(program),
        };
        let output = command
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = match self.owner {
            Some(owner) => {
                let mut command = std::process::Command::new("runuser");
                command.args(["-u", owner, "--"]).arg(&pg_ctl);
                command
            }
            None => std::process::Command::new(&pg_ctl),
        };
        let _ = command
            .args(["-D", &data, "stop", "-m", "immediate"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian keeps the server binaries (initdb, pg_ctl) out of PATH.
fn server_binaries() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates
        .into_iter()
        .rev()
        .find(|bin| bin.join("initdb").exists())
        .or_else(|| which("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
        .unwrap_or_else(|| {
            panic!("PostgreSQL's server binaries (initdb, pg_ctl) are missing: apt-get install postgresql")
        })
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.exists())
    })
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}
