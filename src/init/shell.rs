//! The rescue shell: busybox `sh` on the primary console, as a session
//! leader with the console as its controlling terminal (job control, ^C).

use super::process;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the rescue shell on `console` until it exits; returns its exit code.
pub fn rescue_shell(console: &Path) -> std::io::Result<i32> {
    let tty = OpenOptions::new().read(true).write(true).open(console)?;
    let mut cmd = Command::new("/usr/bin/setsid");
    // `setsid -c` makes the console our controlling tty, which an init
    // cannot give a child without unsafe pre_exec code.
    cmd.args(["-c", "/bin/sh", "-l"])
        .stdin(Stdio::from(tty.try_clone()?))
        .stdout(Stdio::from(tty.try_clone()?))
        .stderr(Stdio::from(tty))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("TERM", "vt100")
        .env("PS1", "p2xen-rescue# ")
        .current_dir("/");
    process::run(&mut cmd)
}
