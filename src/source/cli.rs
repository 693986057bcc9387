//! `p2xen inspect`: what is on the disks, as text or JSON.

use std::process::ExitCode;

pub use super::inspect::InspectArgs;

/// Exit 0 when every disk was read whole, 1 when something could not be
/// (the report says what) or inspection itself failed.
pub fn run(args: InspectArgs) -> ExitCode {
    match super::inspect::run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            log::error!("inspect: {e}");
            ExitCode::FAILURE
        }
    }
}
