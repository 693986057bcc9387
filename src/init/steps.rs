//! The PID-1 set-up as a table of small steps, each printable as the shell
//! command it replaces, run by one loop that logs every failure and goes on
//! (modelled on u-root's pkg/libinit/root_linux.go).

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use std::fmt;

#[derive(Debug, Clone)]
pub enum Step {
    Mkdir {
        path: &'static str,
        mode: u32,
    },
    Mount {
        source: &'static str,
        target: &'static str,
        fstype: &'static str,
        flags: MsFlags,
        data: &'static str,
    },
    Symlink {
        target: &'static str,
        link: &'static str,
    },
    Mknod {
        path: &'static str,
        mode: u32,
        major: u64,
        minor: u64,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Mkdir { path, mode } => write!(f, "mkdir -p -m {mode:o} {path}"),
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                let mut opts: Vec<&str> = Vec::new();
                for (flag, name) in [
                    (MsFlags::MS_NOSUID, "nosuid"),
                    (MsFlags::MS_NODEV, "nodev"),
                    (MsFlags::MS_NOEXEC, "noexec"),
                    (MsFlags::MS_RDONLY, "ro"),
                ] {
                    if flags.contains(flag) {
                        opts.push(name);
                    }
                }
                if !data.is_empty() {
                    opts.push(data);
                }
                if opts.is_empty() {
                    write!(f, "mount -t {fstype} {source} {target}")
                } else {
                    write!(
                        f,
                        "mount -t {fstype} -o {} {source} {target}",
                        opts.join(",")
                    )
                }
            }
            Step::Symlink { target, link } => write!(f, "ln -s {target} {link}"),
            Step::Mknod {
                path,
                mode,
                major,
                minor,
            } => write!(f, "mknod -m {mode:o} {path} c {major} {minor}"),
        }
    }
}

impl Step {
    /// Runs the step; an already-present result (directory, link, node,
    /// mount point in use) counts as success so the table can run twice.
    pub fn run(&self) -> Result<(), Errno> {
        let r = match self {
            Step::Mkdir { path, mode } => {
                nix::unistd::mkdir(*path, Mode::from_bits_truncate(*mode))
            }
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => nix::mount::mount(
                Some(*source),
                *target,
                Some(*fstype),
                *flags,
                (!data.is_empty()).then_some(*data),
            ),
            Step::Symlink { target, link } => nix::unistd::symlinkat(*target, None, *link),
            Step::Mknod {
                path,
                mode,
                major,
                minor,
            } => nix::sys::stat::mknod(
                *path,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(*mode),
                nix::sys::stat::makedev(*major, *minor),
            ),
        };
        match r {
            Err(Errno::EEXIST) => Ok(()),
            Err(Errno::EBUSY) if matches!(self, Step::Mount { .. }) => Ok(()),
            other => other,
        }
    }
}

const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);
const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NOEXEC: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC);

const fn mkdir(path: &'static str, mode: u32) -> Step {
    Step::Mkdir { path, mode }
}

const fn mount(
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: &'static str,
) -> Step {
    Step::Mount {
        source,
        target,
        fstype,
        flags,
        data,
    }
}

const fn chardev(path: &'static str, mode: u32, major: u64, minor: u64) -> Step {
    Step::Mknod {
        path,
        mode,
        major,
        minor,
    }
}

const fn symlink(target: &'static str, link: &'static str) -> Step {
    Step::Symlink { target, link }
}

/// The kernel's filesystems, each mount point made just before.
const FILESYSTEMS: &[Step] = &[
    mkdir("/proc", 0o555),
    mkdir("/sys", 0o555),
    mkdir("/dev", 0o755),
    mkdir("/run", 0o755),
    mkdir("/tmp", 0o1777),
    mount("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, ""),
    mount("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, ""),
    mount(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MsFlags::MS_NOSUID,
        "mode=0755",
    ),
    mount("tmpfs", "/run", "tmpfs", NOSUID_NODEV, "mode=0755"),
];

/// Fallbacks in case devtmpfs failed: the console and the log need these.
const DEVICE_NODES: &[Step] = &[
    chardev("/dev/console", 0o600, 5, 1),
    chardev("/dev/null", 0o666, 1, 3),
    chardev("/dev/kmsg", 0o644, 1, 11),
];

/// The filesystems inside /dev, which need /dev mounted first.
const DEV_FILESYSTEMS: &[Step] = &[
    mkdir("/dev/pts", 0o755),
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        NOSUID_NOEXEC,
        "gid=5,mode=620,ptmxmode=666",
    ),
    mkdir("/dev/shm", 0o1777),
    mount("tmpfs", "/dev/shm", "tmpfs", NOSUID_NODEV, "mode=1777"),
];

/// Scripts (and the rescue shell's tools) stat these; without them
/// e.g. `stat -L /dev/stdin` loops (seen with Xen's hotplug scripts).
const LINKS: &[Step] = &[
    symlink("/proc/self/fd", "/dev/fd"),
    symlink("/proc/self/fd/0", "/dev/stdin"),
    symlink("/proc/self/fd/1", "/dev/stdout"),
    symlink("/proc/self/fd/2", "/dev/stderr"),
    mkdir("/etc", 0o755),
    symlink("/proc/self/mounts", "/etc/mtab"),
];

/// What PID 1 sets up before anything else, phase by phase; the order
/// matters (mount points first, /dev mounted before what lives in it).
pub fn base_steps() -> Vec<Step> {
    [FILESYSTEMS, DEVICE_NODES, DEV_FILESYSTEMS, LINKS].concat()
}

/// Runs every step, logging each failure with the command it stands for.
/// Returns the number of failed steps.
pub fn run_all(steps: &[Step]) -> usize {
    let mut failed = 0;
    for step in steps {
        match step.run() {
            Ok(()) => log::debug!("{step}"),
            Err(e) => {
                failed += 1;
                log::error!("`{step}` failed: {}", e.desc());
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_print_as_commands() {
        let steps = base_steps();
        let text: Vec<String> = steps.iter().map(|s| s.to_string()).collect();
        assert!(text.contains(&"mount -t proc -o nosuid,nodev,noexec proc /proc".to_string()));
        assert!(text.contains(&"mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev".to_string()));
        assert!(text.contains(&"ln -s /proc/self/fd/0 /dev/stdin".to_string()));
        assert!(text.contains(&"mknod -m 600 /dev/console c 5 1".to_string()));
        assert_eq!(text[0], "mkdir -p -m 555 /proc");
    }

    #[test]
    fn rerun_is_success() {
        let dir = tempfile::tempdir().unwrap();
        let path: &'static str = Box::leak(
            dir.path()
                .join("d")
                .to_string_lossy()
                .into_owned()
                .into_boxed_str(),
        );
        let link: &'static str = Box::leak(
            dir.path()
                .join("l")
                .to_string_lossy()
                .into_owned()
                .into_boxed_str(),
        );
        for _ in 0..2 {
            assert_eq!(Step::Mkdir { path, mode: 0o755 }.run(), Ok(()));
            assert_eq!(
                Step::Symlink {
                    target: "/proc/self/fd",
                    link
                }
                .run(),
                Ok(())
            );
        }
        assert_eq!(
            std::fs::read_link(link).unwrap(),
            std::path::Path::new("/proc/self/fd")
        );
        let bad = Step::Mkdir {
            path: "/nonexistent-p2xen/x/y",
            mode: 0o755,
        };
        assert_eq!(bad.run(), Err(Errno::ENOENT));
        assert_eq!(run_all(&[bad]), 1);
    }
}
