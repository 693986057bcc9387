//! The serial-console menu (issue 7): an interactive migration on every
//! console at once, over a 9600-baud VT100 line or the VGA screen.
//!
//! `grid` (80x24 frame) → `render` (minimal VT100 update) and `keys` (byte
//! decoder) are the terminal layer; `app` (state, keys → actions) and
//! `draw` (state → frame) are the menu; `console` runs it on real
//! terminals; `backend` is what it needs from the rest of p2xen.

pub mod app;
pub mod backend;
pub mod cli;
pub mod console;
pub mod draw;
pub mod fields;
pub mod grid;
pub mod keys;
pub mod local;
pub mod migrate;
pub mod prefill;
pub mod render;

pub use app::MenuOutcome;
pub use backend::{
    Backend, BackendError, DiskBar, DiskEntry, MachineInfo, MigrationEvent, MigrationPlan,
    MigrationResult, Net6Method, NetChoice, NetMethod, NicInfo, ResultDisk,
};
pub use console::{MenuError, run};
pub use prefill::{MenuPrefill, console_paths};
