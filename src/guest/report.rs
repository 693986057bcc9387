//! `STORE/NAME/report.json`: the copy's report, to which the conversion adds
//! its `conversion` key (read-modify-write, other keys kept as they are).

use std::path::Path;

use super::{ConversionReport, GuestError};

pub fn merge(path: &Path, conv: &ConversionReport) -> Result<(), GuestError> {
    let io = |source| GuestError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut doc = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<serde_json::Value>(&text).map_err(|source| {
            GuestError::ReportJson {
                path: path.to_path_buf(),
                source,
            }
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(io(e)),
    };
    let value = serde_json::to_value(conv).map_err(|source| GuestError::ReportJson {
        path: path.to_path_buf(),
        source,
    })?;
    match doc.as_object_mut() {
        Some(obj) => {
            obj.insert("conversion".to_string(), value);
        }
        None => {
            return Err(GuestError::ReportNotObject {
                path: path.to_path_buf(),
            });
        }
    }
    let text = serde_json::to_string_pretty(&doc).map_err(|source| GuestError::ReportJson {
        path: path.to_path_buf(),
        source,
    })?;
    // Written beside and renamed, so a crash never leaves half a report.
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{Layout, XenType};

    fn conv() -> ConversionReport {
        ConversionReport {
            name: "g".into(),
            date: "d".into(),
            dry_run: false,
            layout: Layout::Disk,
            xen_type: XenType::Pv,
            boot_route: "pvgrub2".into(),
            boot_reason: "r".into(),
            firmware: crate::guest::Firmware::Bios,
            firmware_reason: String::new(),
            root_device: "/dev/xvda1".into(),
            config_path: "/etc/xen/g.cfg".into(),
            config: String::new(),
            images: vec![],
            kernels: vec![],
            fixups: vec![],
            warnings: vec![],
            next_command: "xl create /etc/xen/g.cfg".into(),
        }
    }

    #[test]
    fn creates_or_merges_keeping_other_keys() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("report.json");
        merge(&p, &conv()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["conversion"]["type"], "pv");
        std::fs::write(&p, r#"{"copy":{"bytes":5},"conversion":{"old":1}}"#).unwrap();
        merge(&p, &conv()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["copy"]["bytes"], 5);
        assert_eq!(v["conversion"]["boot_route"], "pvgrub2");
        assert!(v["conversion"].get("old").is_none());
        std::fs::write(&p, "[1]").unwrap();
        let e = merge(&p, &conv()).unwrap_err();
        assert!(e.to_string().contains("not a JSON object"), "{e}");
    }
}
