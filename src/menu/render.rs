//! Turns the previous frame into the next with as few bytes as possible.
//!
//! Hand-written rather than crossterm/ratatui/termion: the live image has no
//! terminfo database, the consoles are plain VT100 (often a 9600-baud serial
//! line or a BMC's serial-over-LAN), and the whole menu must stay a few
//! kilobytes of code. Only these sequences are ever sent: `ESC[r;cH` (cursor
//! address), `ESC[K` (erase to end of line), `ESC[H ESC[2J` (full redraw),
//! `ESC[0m` / `ESC[7m` (plain / reverse video).

use super::grid::{COLS, Cell, Grid, ROWS};

#[derive(Debug, Default)]
pub struct Renderer {
    /// What the terminal shows; None: unknown (first frame, after Ctrl-L,
    /// after a shell ran on it), so the next frame is a full redraw.
    shown: Option<Grid>,
}

impl Renderer {
    pub fn new() -> Renderer {
        Renderer { shown: None }
    }

    /// Forgets what the terminal shows: the next frame repaints everything.
    pub fn invalidate(&mut self) {
        self.shown = None;
    }

    /// The bytes that turn the shown frame into `next`; empty when nothing
    /// changed.
    pub fn frame(&mut self, next: &Grid) -> Vec<u8> {
        let mut out = Vec::new();
        let mut reverse = false;
        let full = self.shown.is_none();
        if full {
            out.extend_from_slice(b"\x1b[0m\x1b[H\x1b[2J");
        }
        let blank = Grid::new();
        let prev = self.shown.as_ref().unwrap_or(&blank);
        // Where the terminal cursor is after our last write, to skip
        // redundant addressing of adjacent runs.
        let mut at: Option<(usize, usize)> = None;
        for r in 0..ROWS {
            let old = prev.row(r);
            let new = next.row(r);
            if old == new {
                continue;
            }
            let Some(first) = (0..COLS).find(|&c| old.get(c) != new.get(c)) else {
                continue;
            };
            let last = (0..COLS)
                .rev()
                .find(|&c| old.get(c) != new.get(c))
                .unwrap_or(first);
            // Past `new_end` the new row is plain blanks: one ESC[K clears it.
            let new_end = (0..COLS)
                .rev()
                .find(|&c| new.get(c) != Some(&Cell::BLANK))
                .map_or(0, |c| c + 1);
            let (stop, erase) = if last >= new_end && new_end < COLS {
                (new_end.max(first), true)
            } else {
                (last + 1, false)
            };
            if at != Some((r, first)) {
                out.extend_from_slice(format!("\x1b[{};{}H", r + 1, first + 1).as_bytes());
            }
            for cell in new.get(first..stop).unwrap_or(&[]) {
                if cell.reverse != reverse {
                    reverse = cell.reverse;
                    out.extend_from_slice(if reverse { b"\x1b[7m" } else { b"\x1b[0m" });
                }
                let mut buf = [0u8; 4];
                out.extend_from_slice(cell.ch.encode_utf8(&mut buf).as_bytes());
            }
            if erase {
                if reverse {
                    reverse = false;
                    out.extend_from_slice(b"\x1b[0m");
                }
                out.extend_from_slice(b"\x1b[K");
            }
            at = if stop < COLS { Some((r, stop)) } else { None };
        }
        if reverse {
            out.extend_from_slice(b"\x1b[0m");
        }
        let moved = !out.is_empty();
        let cursor_changed = self.shown.as_ref().is_none_or(|s| s.cursor != next.cursor);
        if moved || cursor_changed {
            let (r, c) = next.cursor;
            if at != Some((r, c)) {
                out.extend_from_slice(format!("\x1b[{};{}H", r + 1, c + 1).as_bytes());
            }
        }
        self.shown = Some(next.clone());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(bytes: &[u8]) -> vt100::Parser {
        let mut p = vt100::Parser::new(ROWS as u16, COLS as u16, 0);
        p.process(bytes);
        p
    }

    #[test]
    fn first_frame_is_a_full_redraw_and_unchanged_frame_is_empty() {
        let mut r = Renderer::new();
        let mut g = Grid::new();
        g.put(0, 0, "hello", false);
        let out = r.frame(&g);
        assert!(out.starts_with(b"\x1b[0m\x1b[H\x1b[2J"));
        assert_eq!(
            screen(&out).screen().contents().lines().next(),
            Some("hello")
        );
        assert!(r.frame(&g).is_empty());
    }

    #[test]
    fn small_change_sends_few_bytes_and_erases_tails() {
        let mut r = Renderer::new();
        let mut g = Grid::new();
        g.put(3, 0, "progress  10%   a long tail", false);
        g.put(5, 0, "unchanged line", true);
        let mut all = r.frame(&g);
        let mut g2 = g.clone();
        g2.put(3, 10, "11%", false);
        let diff = r.frame(&g2);
        assert!(diff.len() <= 17, "{:?}", String::from_utf8_lossy(&diff));
        all.extend_from_slice(&diff);
        let mut g3 = Grid::new();
        g3.put(3, 0, "progress", false);
        g3.put(5, 0, "unchanged line", true);
        let diff = r.frame(&g3);
        assert!(diff.windows(3).any(|w| w == b"\x1b[K"));
        all.extend_from_slice(&diff);
        let p = screen(&all);
        let text = p.screen().contents();
        assert_eq!(
            text.lines().nth(3).map(str::trim_end),
            Some("progress"),
            "{text:?}"
        );
        assert!(p.screen().cell(5, 0).is_some_and(|c| c.inverse()));
    }

    #[test]
    fn random_frames_always_reproduce_the_grid() {
        // Deterministic pseudo-random frames; the emulator must always end
        // up showing exactly the grid.
        let mut seed: u32 = 12345;
        let mut next = || {
            seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
            (seed >> 16) as usize
        };
        let mut r = Renderer::new();
        let mut p = vt100::Parser::new(ROWS as u16, COLS as u16, 0);
        for _ in 0..200 {
            let mut g = Grid::new();
            for _ in 0..(next() % 12) {
                let row = next() % ROWS;
                let col = next() % COLS;
                let len = next() % 30;
                let text: String = (0..len)
                    .map(|_| (b'a' + (next() % 26) as u8) as char)
                    .collect();
                g.put(row, col, &text, next() % 3 == 0);
            }
            g.cursor = (next() % ROWS, next() % COLS);
            p.process(&r.frame(&g));
            for row in 0..ROWS {
                for col in 0..COLS {
                    let want = g.cell(row, col);
                    let got = p.screen().cell(row as u16, col as u16);
                    let got_ch = got.map(|c| c.contents()).unwrap_or_default();
                    let got_ch = if got_ch.is_empty() {
                        " ".to_string()
                    } else {
                        got_ch
                    };
                    assert_eq!(got_ch, want.ch.to_string(), "cell {row},{col}");
                    if want.ch != ' ' {
                        assert_eq!(got.map(|c| c.inverse()), Some(want.reverse));
                    }
                }
            }
            assert_eq!(
                p.screen().cursor_position(),
                (g.cursor.0 as u16, g.cursor.1 as u16)
            );
        }
    }
}
