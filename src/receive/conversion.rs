//! The hook where the guest conversion runs after a verified copy.

use std::path::Path;

use crate::guest;
use crate::wire::report::ConversionSummary;

/// Runs `guest::convert` on the verified copy in `store_dir` (STORE/NAME),
/// writing the xl config into `xen_dir` with the receiver's `policy`
/// (`--no-fixup`, `--vif-per-nic`, `--guest-kernel`). The conversion adds its report to
/// `report.json` itself; its summary is returned for the sender. `replace`
/// lets it write over the config and images an earlier conversion of this
/// migration wrote (after a cutover pass).
pub fn after_verified_copy(
    store_dir: &Path,
    name: &str,
    xen_dir: &Path,
    policy: &guest::ConversionPolicy,
    replace: bool,
) -> Result<ConversionSummary, String> {
    let mut req =
        guest::ConvertRequest::from_store(store_dir.to_path_buf(), name, xen_dir.to_path_buf())
            .map_err(|e| e.to_string())?;
    req.force = replace;
    req.policy = policy.clone();
    let report = guest::convert(&req).map_err(|e| e.to_string())?;
    Ok(ConversionSummary {
        config_path: report.config_path.display().to_string(),
        next_command: report.next_command,
        warnings: report.warnings,
    })
}
