//! PID-1 side of the live image: kernel command line, network, and (branch `live`) the rest.

pub mod cmdline;
pub mod net;
