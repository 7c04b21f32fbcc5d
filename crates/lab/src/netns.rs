//! Network namespaces owned by a lab run: created with `ip netns add`, deleted on drop (also
//! when a test fails), named `<prefix>-<name>` so a run only ever touches its own; and
//! `in_namespace`, which runs a closure on a thread that has entered a namespace, so sockets
//! it opens live there. Shelling out to `ip` keeps the netlink surface small and auditable.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

/// What went wrong building or using a lab.
#[derive(Debug, Error)]
pub enum LabError {
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A name does not fit the lab's naming rules.
    #[error("invalid lab name `{0}`: use 1 to 6 lower-case letters and digits")]
    Name(String),
}

/// The per-run name prefix: every namespace and interface of a run starts with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// A prefix given by the user (1–6 lower-case letters and digits, so interface names fit
    /// in 15 bytes).
    pub fn new(text: &str) -> Result<Prefix, LabError> {
        let valid = !text.is_empty()
            && text.len() <= 6
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if valid {
            Ok(Prefix(text.to_string()))
        } else {
            Err(LabError::Name(text.to_string()))
        }
    }

    /// A fresh prefix for one run: `c` and five characters from the time and process id.
    pub fn unique() -> Prefix {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mixed = (u64::from(nanos) ^ (u64::from(std::process::id()) << 20))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            >> 40;
        Prefix(format!("c{:05x}", mixed & 0xf_ffff))
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Deletes every network namespace whose name starts with `<prefix>-`; returns how many.
pub fn delete_with_prefix(prefix: &Prefix) -> Result<usize, LabError> {
    let listing = run("ip", &["netns", "list"])?;
    let mut deleted = 0;
    for line in listing.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(&format!("{}-", prefix.as_str())) {
            run("ip", &["netns", "del", name])?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Runs a command, returning its stdout, or an error with its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LabError::Io {
            what: format!("cannot run {program}"),
            source,
        })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A network namespace that is deleted when dropped.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates `<prefix>-<name>` with its loopback up.
    pub fn create(prefix: &Prefix, name: &str) -> Result<Namespace, LabError> {
        let full = format!("{}-{name}", prefix.as_str());
        run("ip", &["netns", "add", &full])?;
        let namespace = Namespace { name: full };
        namespace.ip(&["link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// Its full name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String, LabError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a program inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, LabError> {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a program inside the namespace with `input` on its stdin.
    pub fn exec_with_input(
        &self,
        program: &str,
        args: &[&str],
        input: &str,
    ) -> Result<String, LabError> {
        exec_in(&self.name, program, args, input)
    }

    /// Stops owning the namespace: it outlives this value (a lab kept after `lab up`).
    pub fn keep(self) -> String {
        let name = self.name.clone();
        std::mem::forget(self);
        name
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        self.exec("sysctl", &["-qw", &format!("{key}={value}")])
            .map(|_| ())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace removes every interface in it; a failure here leaves a
        // namespace with our prefix that `lab down` or the next run's sweep removes.
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Runs a program inside the network namespace `netns` with `input` on its stdin.
pub fn exec_in(netns: &str, program: &str, args: &[&str], input: &str) -> Result<String, LabError> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, program])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Io {
            what: format!("cannot run {program}"),
            source,
        })?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .map_err(|source| LabError::Io {
            what: format!("cannot write to {program}"),
            source,
        })?;
    let output = child.wait_with_output().map_err(|source| LabError::Io {
        what: format!("waiting for {program}"),
        source,
    })?;
    if !output.status.success() {
        return Err(LabError::Command {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `work` on a thread that has entered the network namespace `name`: sockets it opens
/// belong to that namespace.
pub fn in_namespace<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    let path = format!("/var/run/netns/{name}");
    let handle = std::thread::spawn(move || -> Result<T, LabError> {
        let file = File::open(&path).map_err(|source| LabError::Io {
            what: format!("cannot open {path}"),
            source,
        })?;
        // SAFETY: setns takes a valid namespace file descriptor that `file` keeps open for the
        // call; it changes only this thread's network namespace, which ends with the thread.
        #[allow(unsafe_code)]
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if result != 0 {
            return Err(LabError::Io {
                what: format!("setns into {path}"),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(work())
    });
    handle.join().map_err(|_| LabError::Io {
        what: "namespace thread panicked".into(),
        source: std::io::Error::other("panic"),
    })?
}
