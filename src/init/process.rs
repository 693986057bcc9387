//! Children of PID 1: one reaper thread collects every exit (orphans
//! re-parented to us included) and hands the statuses of the children we
//! started ourselves back to whoever waits for them.
//!
//! In PID 1 nothing may call `Child::wait` / `Command::output`: the reaper
//! could collect that child first. Use [`run`] instead.

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::process::Command;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, MutexGuard};

static WAITERS: Mutex<Option<HashMap<i32, Sender<WaitStatus>>>> = Mutex::new(None);

fn waiters() -> MutexGuard<'static, Option<HashMap<i32, Sender<WaitStatus>>>> {
    match WAITERS.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Collects every exited child; called by the signal thread on SIGCHLD.
pub fn reap() {
    // Holding the lock across waitpid means a child spawned by `start` is
    // registered before we can collect it.
    let mut guard = waiters();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                match guard.as_mut().and_then(|m| m.remove(&pid.as_raw())) {
                    Some(tx) => {
                        let _ = tx.send(status);
                    }
                    None => log::debug!("reaped orphan {pid}: {status:?}"),
                }
            }
        }
    }
}

/// Starts `cmd` and returns a receiver for its exit status.
pub fn start(cmd: &mut Command) -> std::io::Result<(u32, Receiver<WaitStatus>)> {
    let mut guard = waiters();
    let child = cmd.spawn()?;
    let (tx, rx) = channel();
    guard
        .get_or_insert_with(HashMap::new)
        .insert(child.id() as i32, tx);
    Ok((child.id(), rx))
}

/// Runs `cmd` to completion; returns its exit code (128+signal if killed).
pub fn run(cmd: &mut Command) -> std::io::Result<i32> {
    let (_, rx) = start(cmd)?;
    match rx.recv() {
        Ok(WaitStatus::Exited(_, code)) => Ok(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(128 + sig as i32),
        Ok(_) => Ok(-1),
        Err(_) => Err(std::io::Error::other("reaper thread is gone")),
    }
}
