//! Paints the menu state into an 80x24 grid.

use super::app::{App, ItemKind, Overlay, Screen};
use super::backend::DiskEntry;
use super::grid::{COLS, Grid, ROWS, wrap};

const TOP: usize = 2;
/// Rows 2..MSG_ROW are the screen's body.
const MSG_ROW: usize = ROWS - 2;
const KEYS_ROW: usize = ROWS - 1;
const LABEL_W: usize = 26;
const KEYS: &str = "Up/Dn j/k move  Enter/1-9 choose  n next  Esc/b back  l log  ! shell  ? help";

pub fn size(bytes: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", U.get(i).copied().unwrap_or("?"))
    }
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "f64 as u64 saturates: a shown value"
)]
fn duration(secs: f64) -> String {
    let s = if secs.is_finite() && secs > 0.0 {
        secs as u64
    } else {
        0
    };
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn header(g: &mut Grid, app: &App, console: &str) {
    let left = format!(" p2xen  {}/7 {}", app.screen.number(), app.screen.title());
    let right = if app.migration_running() && app.screen != Screen::Progress {
        format!("migration running (p)  {console} ")
    } else {
        format!("{console} ")
    };
    let pad = COLS.saturating_sub(left.len() + right.len());
    g.bar(0, &format!("{left}{}{right}", " ".repeat(pad)));
}

/// Overview text: the machine and its disks (also used by the help of
/// other consoles and by tests).
pub fn overview_lines(app: &App) -> Vec<String> {
    let m = &app.machine;
    let mut v = vec![format!(
        "Machine: {} CPU(s), {} memory",
        m.cpus,
        size(m.memory_bytes)
    )];
    for n in &m.nics {
        let link = match n.link {
            Some(true) => "link up",
            Some(false) => "no link",
            None => "link ?",
        };
        v.push(format!(
            "  NIC {} {} {} {}{}",
            n.name,
            n.mac,
            n.driver.as_deref().unwrap_or("driver ?"),
            link,
            if n.addresses.is_empty() {
                String::new()
            } else {
                format!(" {}", n.addresses.join(" "))
            }
        ));
    }
    if app.disks.is_empty() {
        v.push("No disks found.".into());
    }
    for d in &app.disks {
        disk_lines(d, &mut v);
    }
    v
}

fn disk_lines(d: &DiskEntry, v: &mut Vec<String>) {
    let r = match &d.report {
        Ok(r) => r,
        Err(e) => {
            v.push(format!("Disk {}: cannot be read: {e}", d.path.display()));
            return;
        }
    };
    v.push(format!(
        "Disk {} {} {} table {}",
        d.path.display(),
        size(r.size_bytes),
        r.model.as_deref().unwrap_or(""),
        r.table
    ));
    if let Some(c) = &r.controller {
        v.push(format!("  controller: {}", c.summary()));
    }
    let fs_text = |fs: &Option<crate::source::filesystems::Filesystem>| match fs {
        None => "no filesystem".to_string(),
        Some(f) => {
            let kind = serde_json::to_value(f.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "?".into());
            match f.used_bytes {
                Some(u) => format!("{kind} used {}", size(u)),
                None => kind,
            }
        }
    };
    let os_text = |os: &Option<crate::source::inspect::OsInfo>| {
        os.as_ref()
            .map(|o| {
                format!(
                    "  OS: {}{}",
                    o.pretty_name.as_deref().unwrap_or("Linux"),
                    o.hostname
                        .as_deref()
                        .map(|h| format!(" ({h})"))
                        .unwrap_or_default()
                )
            })
            .unwrap_or_default()
    };
    if r.table == "none" {
        v.push(format!(
            "  whole disk: {}{}",
            fs_text(&r.filesystem),
            os_text(&r.os)
        ));
    }
    for p in &r.partitions {
        if p.extended {
            continue;
        }
        v.push(format!(
            "  {:>2} {:>9} {}{}",
            p.number,
            size(p.size_bytes),
            fs_text(&p.filesystem),
            os_text(&p.os)
        ));
    }
    for w in r.warnings.iter().chain(&r.errors) {
        v.push(format!("  ! {w}"));
    }
}

fn progress_lines(app: &App, width: usize) -> Vec<String> {
    let Some(m) = &app.migration else {
        return vec!["No migration started.".into()];
    };
    let mut v = vec![format!(
        "Guest {} -> {}   elapsed {}",
        m.plan.name,
        m.plan.server,
        duration(m.started.elapsed().as_secs_f64())
    )];
    let (mut done, mut total) = (0u64, 0u64);
    for (i, b) in m.bars.iter().enumerate() {
        done = done.saturating_add(b.done_bytes);
        total = total.saturating_add(b.total_bytes);
        let pct = percent(b.done_bytes, b.total_bytes);
        let bar_w = 24;
        let filled = usize::try_from(pct).map_or(bar_w, |p| p * bar_w / 100);
        v.push(format!(
            "disk{i} {:<14} [{}{}] {:>3}% {}/{}",
            short(&b.source, 14),
            "#".repeat(filled),
            ".".repeat(bar_w - filled),
            pct,
            size(b.done_bytes),
            size(b.total_bytes)
        ));
    }
    if m.bars.is_empty() {
        v.push("Planning what to copy...".into());
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "f64 as u64 saturates: a shown value"
    )]
    let rate = m.bytes_per_sec.max(0.0) as u64;
    v.push(format!(
        "Total {:>3}%  {}/s  ETA {}",
        percent(done, total),
        size(rate),
        m.eta_secs.map(duration).unwrap_or_else(|| "-".into())
    ));
    match &m.outcome {
        None => {}
        Some(Ok(_)) => v.push("Finished and verified.".into()),
        Some(Err(e)) => v.extend(wrap(&format!("FAILED: {e}"), width)),
    }
    v
}

fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        return 100;
    }
    u64::try_from(u128::from(done.min(total)) * 100 / u128::from(total)).unwrap_or(100)
}

fn short(s: &str, w: usize) -> String {
    if s.len() <= w {
        s.to_string()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(w - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("~{tail}")
    }
}

fn body_lines(app: &App) -> Vec<String> {
    let w = COLS - 2;
    match app.screen {
        Screen::Overview => overview_lines(app)
            .iter()
            .flat_map(|l| {
                let mut parts = wrap(l, w).into_iter();
                let first = parts.next().unwrap_or_default();
                std::iter::once(first)
                    .chain(parts.flat_map(|rest| wrap(&format!("      {rest}"), w)))
            })
            .collect(),
        Screen::Network => {
            let mut v = Vec::new();
            for n in &app.machine.nics {
                v.push(format!(
                    "{} {} {}",
                    n.name,
                    n.mac,
                    if n.addresses.is_empty() {
                        "no address".into()
                    } else {
                        n.addresses.join(" ")
                    }
                ));
            }
            v.extend(app.net_result.iter().cloned());
            v
        }
        Screen::Target => {
            let mut v = vec![
                "Run `p2xen receive` on dom0: it prints its address, token and fingerprint.".into(),
            ];
            if !app.fingerprint.is_empty() {
                v.push(format!(
                    "Fingerprint{}:",
                    if app.trusted { " (trusted by you)" } else { "" }
                ));
                v.push(format!(" {}", app.fingerprint));
            }
            v
        }
        Screen::Guest => vec![],
        Screen::Review => {
            let mut v = Vec::new();
            match app.plan() {
                Ok(p) => {
                    v.push(format!("Receiver {}  name {}", p.server, p.name));
                    v.push("Fingerprint".into());
                    v.push(format!(" {}", p.fingerprint));
                    v.push(format!(
                        "Memory {} MiB  vCPUs {}  layout {}  type {}  bridge {}",
                        p.memory_mib,
                        p.vcpus,
                        p.layout,
                        p.xen_type
                            .map_or("auto", crate::wire::machine::XenType::as_str),
                        p.bridge.as_deref().unwrap_or("default")
                    ));
                    let disks: Vec<String> =
                        p.disks.iter().map(|d| d.display().to_string()).collect();
                    v.push(format!("Disks {}", disks.join(" ")));
                    v.push(String::new());
                    if let Some(line) = app.next_time() {
                        v.extend(wrap(&format!("Next time, boot with: {line}"), w));
                    }
                }
                Err(e) => v.push(format!("Not ready: {e}")),
            }
            v
        }
        Screen::Progress => {
            let mut v = progress_lines(app, w);
            v.push(String::new());
            v.push("Log:".into());
            v
        }
        Screen::Result => result_lines(app, w),
    }
}

fn result_lines(app: &App, w: usize) -> Vec<String> {
    let Some(m) = &app.migration else {
        return vec![];
    };
    let mut v = Vec::new();
    match &m.outcome {
        Some(Ok(r)) => {
            v.push(format!("Guest {} copied and verified.", r.name));
            for (i, d) in r.disks.iter().enumerate() {
                v.push(format!(
                    "disk{i} {} -> {}",
                    d.source,
                    d.image.as_deref().unwrap_or("?")
                ));
                v.push(format!("  {}", d.digest));
            }
            if let Some(cfg) = &r.config_path {
                // Wrapped: a long store path must not cut the command off.
                v.extend(wrap(
                    &format!("Config {cfg}; on dom0 run: xl create {cfg}"),
                    w,
                ));
            }
            // Before the warnings: a conversion with many warnings must
            // not push it off the screen (the warnings are in the log too).
            if let Some(line) = app.next_time() {
                v.extend(wrap(&format!("Next time, boot with: {line}"), w));
            }
            for wline in &r.warnings {
                v.extend(wrap(&format!("warning: {wline}"), w));
            }
        }
        Some(Err(e)) => v.extend(wrap(&format!("Migration FAILED: {e}"), w)),
        None => v.push("The migration is still running.".into()),
    }
    v
}

fn help_lines(app: &App) -> Vec<&'static str> {
    let mut v = match app.screen {
        Screen::Overview => vec![
            "Overview: what p2xen found on this machine. Nothing is written to",
            "these disks: they are opened read-only.",
        ],
        Screen::Network => vec![
            "Network: DHCP or a static address for one or all interfaces, a bond",
            "(bond0) of chosen NICs, a VLAN id on the NIC or bond, and IPv6 (SLAAC,",
            "static, DHCPv6), as bond=, vlan=, ip= would. Apply configures it;",
            "Test checks that the receiver answers.",
        ],
        Screen::Target => vec![
            "Target: the receiver (`p2xen receive` on dom0), its token and the",
            "sha256 fingerprint it printed. Leave the fingerprint empty to see the",
            "one the receiver presents; compare it with the receiver's printout",
            "and press y only if they match.",
        ],
        Screen::Guest => vec![
            "Guest: name (letters, digits, . _ -), memory (MiB or 512M, 2G), vCPUs,",
            "the disks to copy, one image per disk or per partition, Xen type and",
            "bridge. Enter edits or toggles; values are checked as you type.",
        ],
        Screen::Review => vec![
            "Review: everything chosen and the kernel command line that repeats",
            "this migration unattended on the next server.",
        ],
        Screen::Progress => vec![
            "Progress: the copy runs on; you may leave this screen (Esc), open a",
            "shell or the log, and come back with p.",
        ],
        Screen::Result => vec!["Result: where the guest is and how to start it on dom0."],
    };
    v.extend([
        "",
        "Keys (letters work where arrows are mangled):",
        "  Up/Down or k/j   move          Enter or 1-9   choose / edit / toggle",
        "  n or Right       next screen   Esc, Backspace or b   back",
        "  l                full log      !              rescue shell",
        "  p                progress      Ctrl-L         repaint a garbled screen",
        "  In a field: type, Backspace, Enter keeps, Esc cancels.",
        "",
        "Press any key to return.",
    ]);
    v
}

/// The frame for the console that has control (or for all of them while
/// nobody has taken control yet).
pub fn draw(app: &App, console: &str) -> Grid {
    let mut g = Grid::new();
    header(&mut g, app, console);
    match &app.overlay {
        Some(Overlay::Help) => {
            for (i, l) in help_lines(app).iter().enumerate() {
                g.put(TOP + i, 1, l, false);
            }
            g.cursor = (KEYS_ROW, 0);
            return g;
        }
        Some(Overlay::Log { scroll_from_end }) => {
            let rows = MSG_ROW - TOP;
            let end = app.log_view.len().saturating_sub(*scroll_from_end);
            let start = end.saturating_sub(rows);
            for (i, l) in app
                .log_view
                .get(start..end)
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                g.put(TOP + i, 1, l, false);
            }
            g.put(
                KEYS_ROW,
                0,
                &format!(
                    "Full log, lines {}-{} of {}: Up/Dn scroll, any other key returns",
                    start + 1,
                    end,
                    app.log_view.len()
                ),
                false,
            );
            g.cursor = (KEYS_ROW, 0);
            return g;
        }
        Some(Overlay::Trust { fingerprint }) => {
            let lines = [
                format!(
                    "The receiver at {} presents this certificate fingerprint:",
                    app.server
                ),
                String::new(),
                format!("  {fingerprint}"),
                String::new(),
                "Compare it with the fingerprint `p2xen receive` printed on dom0.".into(),
                "Trust this receiver and continue? y = yes, any other key = no".into(),
            ];
            for (i, l) in lines.iter().enumerate() {
                g.put(TOP + 2 + i, 1, l, false);
            }
            g.cursor = (TOP + 7, 63);
            return g;
        }
        None => {}
    }
    let items = app.items();
    let body = body_lines(app);
    // Items first (at most 9 have digit shortcuts), then the body.
    let mut row = TOP;
    if app.screen == Screen::Overview || app.screen == Screen::Progress {
        // Body on top, scrollable; the log tail fills the rest.
        let avail = MSG_ROW - 1 - TOP - items.len();
        let start = if app.screen == Screen::Overview {
            app.scroll.min(body.len().saturating_sub(avail))
        } else {
            0
        };
        for l in body.iter().skip(start).take(avail) {
            g.put(row, 1, l, false);
            row += 1;
        }
        if app.screen == Screen::Progress {
            let rest = MSG_ROW - 1 - row;
            let tail = app.log.len().saturating_sub(rest);
            for l in app.log.get(tail..).unwrap_or(&[]) {
                g.put(row, 2, l, false);
                row += 1;
            }
        } else if body.len() > avail {
            g.put(
                MSG_ROW - 2,
                50,
                &format!(
                    "(Up/Down: more, {}/{})",
                    start + avail.min(body.len()),
                    body.len()
                ),
                false,
            );
        }
        row = MSG_ROW - 1 - items.len();
    }
    let mut cursor = (KEYS_ROW, 0);
    // A machine with many disks has more items than rows: show a window
    // that follows the selection.
    let max_items = MSG_ROW - 1 - row;
    let first = if items.len() > max_items {
        app.sel
            .saturating_sub(max_items.saturating_sub(1))
            .min(items.len() - max_items)
    } else {
        0
    };
    for (i, item) in items.iter().enumerate().skip(first).take(max_items) {
        let selected = i == app.sel;
        let marker = if selected { '>' } else { ' ' };
        // Only items 1-9 have a digit shortcut.
        let num = if i < 9 {
            format!("{})", i + 1)
        } else {
            "  ".into()
        };
        let label = format!("{marker}{num} {:<w$}", item.label, w = LABEL_W - 4);
        g.put(row, 0, &label, selected);
        let value_col = LABEL_W;
        let editing = app
            .editor
            .as_ref()
            .filter(|e| selected && ItemKind::Edit(e.field) == item.kind);
        let width = COLS - value_col - 1;
        match editing {
            Some(ed) => {
                let shown: String = if ed.buf.len() > width - 1 {
                    ed.buf.chars().skip(ed.buf.len() - (width - 1)).collect()
                } else {
                    ed.buf.clone()
                };
                let end = g.put(row, value_col, &format!("[{shown}"), false);
                g.put(row, end, "]", false);
                cursor = (row, end);
            }
            None => {
                let v = if item.value.len() > width {
                    format!(
                        "{}...",
                        item.value.chars().take(width - 3).collect::<String>()
                    )
                } else {
                    item.value.clone()
                };
                g.put(row, value_col, &v, false);
            }
        }
        row += 1;
    }
    if app.screen != Screen::Overview && app.screen != Screen::Progress {
        row += 1;
        let room = MSG_ROW.saturating_sub(row);
        let shown = if body.len() > room {
            room.saturating_sub(1)
        } else {
            body.len()
        };
        for l in body.iter().take(shown) {
            g.put(row, 1, l, false);
            row += 1;
        }
        if shown < body.len() {
            g.put(
                row,
                1,
                &format!(
                    "({} more line(s): l shows the full log)",
                    body.len() - shown
                ),
                false,
            );
        }
    }
    if let Some((text, is_error)) = &app.message {
        let text = if *is_error {
            format!("! {text}")
        } else {
            text.clone()
        };
        g.put(MSG_ROW, 0, &text, *is_error);
    }
    g.put(KEYS_ROW, 0, KEYS, false);
    g.cursor = cursor;
    g
}

/// The frame for the other consoles while one has control.
pub fn draw_watcher(app: &App, controller: &str) -> Grid {
    let mut g = Grid::new();
    g.bar(0, &format!(" p2xen  menu in use on {controller}"));
    g.put(
        TOP,
        1,
        &format!(
            "The menu is in use on {controller} ({} screen).",
            app.screen.title()
        ),
        false,
    );
    let mut row = TOP + 2;
    if app.migration.is_some() {
        for l in progress_lines(app, COLS - 2) {
            if row >= MSG_ROW - 4 {
                break;
            }
            g.put(row, 1, &l, false);
            row += 1;
        }
        row += 1;
        let rest = MSG_ROW.saturating_sub(row);
        let tail = app.log.len().saturating_sub(rest);
        for l in app.log.get(tail..).unwrap_or(&[]) {
            g.put(row, 2, l, false);
            row += 1;
        }
    }
    g.put(
        KEYS_ROW,
        0,
        "Press t to take control here.  Ctrl-L repaints.",
        false,
    );
    g
}
