//! Who else uses a disk image or device: a cutover rewrites an earlier copy
//! in place, and that copy may be the disk of a rehearsal guest that is
//! still running. Writing under a running guest corrupts both, so the
//! cutover is refused while anything holds the target.
//!
//! Three places tell: xenstore's backend entries (every disk of every
//! running domain, whatever its backend: blkback opens a device in the
//! kernel, where no process holds it), loop devices backed by the file
//! (blkback's route to a file), and the open files of processes (qemu's
//! qdisk, a mount through another tool).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Each user of `path` as one line for the refusal ("domain 3 (xenstore
/// /local/domain/0/backend/vbd/3/51712)", "/dev/loop2", "process 812 (qemu-system-i38)").
pub fn users(path: &Path) -> Vec<String> {
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let same = |p: &Path| p == path || fs::canonicalize(p).is_ok_and(|c| c == target);
    let mut out = xen_backends(&same);
    out.extend(loop_devices(&same));
    out.extend(processes(&same));
    out
}

/// Backend entries whose `params` name the target, from `xenstore-ls` (on a
/// host without Xen tools there are no domains to ask about).
fn xen_backends(same: &dyn Fn(&Path) -> bool) -> Vec<String> {
    let Ok(out) = Command::new("xenstore-ls")
        .args(["-f", "/local/domain/0/backend"])
        .output()
    else {
        return Vec::new();
    };
    parse_backends(&String::from_utf8_lossy(&out.stdout), same)
}

fn parse_backends(listing: &str, same: &dyn Fn(&Path) -> bool) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(" = ")?;
            let entry = key.strip_suffix("/params")?;
            let value = value.trim().trim_matches('"');
            // qdisk writes "FORMAT:PATH" ("aio:/srv/web.img"); blkback the path.
            let p = value.rsplit_once(':').map_or(value, |(_, p)| p);
            let domain = entry.rsplit('/').nth(1).unwrap_or("?");
            same(Path::new(p)).then(|| format!("Xen domain {domain} (xenstore {entry})"))
        })
        .collect()
}

fn loop_devices(same: &dyn Fn(&Path) -> bool) -> Vec<String> {
    let Ok(dir) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let backing = fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            same(Path::new(backing.trim())).then(|| format!("/dev/{name}"))
        })
        .collect()
}

fn processes(same: &dyn Fn(&Path) -> bool) -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(proc_dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in proc_dir.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .any(|p: PathBuf| same(&p));
        if holds {
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            out.push(format!("process {pid} ({})", comm.trim()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_matched_by_their_params_path() {
        let listing = "\
/local/domain/0/backend/vbd/3/51712/params = \"/dev/vg0/web-disk0\"
/local/domain/0/backend/vbd/3/51712/mode = \"w\"
/local/domain/0/backend/qdisk/4/51728/params = \"aio:/srv/p2xen/db/disk0.img\"
";
        let is = |want: &'static str| move |p: &Path| p == Path::new(want);
        let web = parse_backends(listing, &is("/dev/vg0/web-disk0"));
        assert_eq!(
            web,
            vec!["Xen domain 3 (xenstore /local/domain/0/backend/vbd/3/51712)"]
        );
        let db = parse_backends(listing, &is("/srv/p2xen/db/disk0.img"));
        assert!(db[0].starts_with("Xen domain 4"), "{db:?}");
        assert!(parse_backends(listing, &is("/srv/other.img")).is_empty());
    }

    #[test]
    fn a_process_holding_the_file_is_found() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("disk0.img");
        std::fs::write(&img, b"x").unwrap();
        assert!(users(&img).is_empty());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec 3<'{}'; echo ready; exec sleep 30",
                img.display()
            ))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let found = users(&img);
        let _ = child.kill();
        let _ = child.wait();
        // The shell execs sleep, so one process holds it, under either name.
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(&format!("process {} (", child.id())),
            "{found:?}"
        );
    }
}
