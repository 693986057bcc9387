//! The few QMP (QEMU Machine Protocol) commands the tests send to a running
//! VM: a Unix socket given with `-qmp unix:PATH,server=on,wait=off`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The `-qmp` argument that makes QEMU listen on `socket`.
pub fn arg(socket: &Path) -> String {
    format!("unix:{},server=on,wait=off", socket.display())
}

/// Sends one command after the capabilities handshake; returns QEMU's
/// answer (`{"return": ...}`), or its error as text.
pub fn execute(socket: &Path, command: &str) -> Result<String, String> {
    let stream = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // Greeting, then the answer to each command; events may come between.
    let mut answer = |reader: &mut BufReader<UnixStream>| -> Result<String, String> {
        loop {
            line.clear();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("QMP: {e}"))?;
            if line.is_empty() {
                return Err("QMP: connection closed".into());
            }
            if line.contains("\"return\"") || line.contains("\"error\"") || line.contains("\"QMP\"")
            {
                return Ok(line.trim().to_string());
            }
        }
    };
    answer(&mut reader)?;
    for cmd in [r#"{"execute":"qmp_capabilities"}"#, command] {
        writeln!(writer, "{cmd}").map_err(|e| format!("QMP: {e}"))?;
        let a = answer(&mut reader)?;
        if a.contains("\"error\"") {
            return Err(format!("QMP {cmd}: {a}"));
        }
        if cmd == command {
            return Ok(a);
        }
    }
    unreachable!("the loop returns on the last command")
}

/// Pulls (or plugs back) the cable of NIC `device` (its `-device ...,id=`).
pub fn set_link(socket: &Path, device: &str, up: bool) -> Result<(), String> {
    execute(
        socket,
        &format!(r#"{{"execute":"set_link","arguments":{{"name":"{device}","up":{up}}}}}"#),
    )
    .map(drop)
}
