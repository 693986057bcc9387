//! The hook where the guest conversion runs after a verified copy.
//!
//! `guest::convert` (branch `guest`) is wired in here when it is merged; until
//! then a verified copy is reported without conversion.

use std::path::Path;

use crate::wire::machine::MachineDescription;

/// Runs the guest conversion on the verified copy in `store_dir`.
/// Returns the conversion report to embed in report.json under `conversion`,
/// or `None` when this build has no conversion.
pub fn after_verified_copy(
    store_dir: &Path,
    name: &str,
    _machine: &MachineDescription,
) -> Result<Option<serde_json::Value>, String> {
    log::info!(
        "{name}: copy verified in {}; guest conversion is not part of this build",
        store_dir.display()
    );
    Ok(None)
}
