//! Writes an md RAID1 member superblock into a member partition image, for
//! tests/e2e/build-demo-servers (the md RAID1 demo server): this machine's
//! kernel has no md driver, so `mdadm --create` cannot make the members.
//! The bytes come from the same builder the tests use (tests/common/md.rs),
//! so the demo server and tests/md_source.rs agree on the layout.
//!
//! ```text
//! cargo run --example md_superblock -- MEMBER VERSION ARRAY-UUID NAME DEV-NUMBER
//! ```
//!
//! MEMBER is the partition image (its size is the member's size), VERSION
//! 1.0, 1.1 or 1.2, ARRAY-UUID 32 hex digits (mdadm's `:` and `-` allowed),
//! NAME `host:name` (at most 32 bytes), DEV-NUMBER the member's slot (0 or
//! 1). The array is a clean two-disk RAID1 whose data starts where
//! `Sb1::raid1` puts it (1 MiB into the member for 1.1/1.2); the example
//! prints that data offset in bytes and the data size, so the script can
//! place the filesystem that lives inside the array.

#[path = "../tests/common/md.rs"]
#[allow(dead_code)]
mod md;

use std::os::unix::fs::FileExt;
use std::process::ExitCode;

fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("array UUID {s:?}: want 32 hex digits"));
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|e| format!("array UUID {s:?}: {e}"))?;
    }
    Ok(out)
}

fn run(args: &[String]) -> Result<String, String> {
    let [member, version, uuid, name, dev] = args else {
        return Err("usage: md_superblock MEMBER VERSION ARRAY-UUID NAME DEV-NUMBER".into());
    };
    let version: &'static str = match version.as_str() {
        "1.0" => "1.0",
        "1.1" => "1.1",
        "1.2" => "1.2",
        v => {
            return Err(format!(
                "metadata {v}: only 1.0, 1.1 and 1.2 are built here"
            ));
        }
    };
    if name.len() > 32 {
        return Err(format!("array name {name:?}: more than 32 bytes"));
    }
    let dev_number: u32 = match dev.as_str() {
        "0" => 0,
        "1" => 1,
        d => {
            return Err(format!(
                "device number {d}: a two-disk RAID1 has slots 0 and 1"
            ));
        }
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(member)
        .map_err(|e| format!("{member}: {e}"))?;
    let size = f.metadata().map_err(|e| format!("{member}: {e}"))?.len();
    if size < 4 << 20 {
        return Err(format!("{member}: {size} bytes is too small for a member"));
    }
    let mut sb = md::Sb1::raid1(version, size, dev_number);
    sb.set_uuid = parse_uuid(uuid)?;
    // The builder keeps the name as a &'static str; this process ends soon.
    sb.name = name.clone().leak();
    // Distinct per member, as mdadm makes them: the array UUID with the
    // slot folded into the last byte.
    sb.dev_uuid = sb.set_uuid;
    sb.dev_uuid[15] ^= 0x5a ^ (dev_number as u8 + 1);
    let (off, bytes) = sb.build(size);
    f.write_all_at(&bytes, off)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{member}: writing the superblock at byte {off}: {e}"))?;
    Ok(format!("{} {}", sb.data_offset * 512, sb.data_size * 512))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("md_superblock: {e}");
            ExitCode::from(2)
        }
    }
}
