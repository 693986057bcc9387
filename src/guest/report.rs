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
