//! The screen model: an 80x24 grid of cells, what a frame of the menu is.

pub const COLS: usize = 80;
pub const ROWS: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub ch: char,
    /// Reverse video (SGR 7), the one attribute every VT100 has.
    pub reverse: bool,
}

impl Cell {
    pub const BLANK: Cell = Cell {
        ch: ' ',
        reverse: false,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    cells: Vec<Cell>,
    /// Where the terminal cursor should rest (row, col), e.g. in the field
    /// being edited.
    pub cursor: (usize, usize),
}

impl Default for Grid {
    fn default() -> Self {
        Grid::new()
    }
}

impl Grid {
    pub fn new() -> Grid {
        Grid {
            cells: vec![Cell::BLANK; COLS * ROWS],
            cursor: (ROWS - 1, 0),
        }
    }

    pub fn cell(&self, row: usize, col: usize) -> Cell {
        self.cells
            .get(row * COLS + col)
            .copied()
            .unwrap_or(Cell::BLANK)
    }

    pub fn row(&self, row: usize) -> &[Cell] {
        let start = row.min(ROWS) * COLS;
        self.cells.get(start..start + COLS).unwrap_or(&[])
    }

    /// Writes `text` from (row, col), clipped at the right edge. Control
    /// characters and anything outside printable ASCII become '?': a VT100
    /// has no other glyphs and must never receive stray control bytes from
    /// on-disk strings (a hostname or a disk model).
    pub fn put(&mut self, row: usize, col: usize, text: &str, reverse: bool) -> usize {
        if row >= ROWS {
            return col;
        }
        // The bottom-right cell stays blank: writing it makes some terminals
        // scroll the whole screen.
        let limit = if row == ROWS - 1 { COLS - 1 } else { COLS };
        let mut c = col;
        for ch in text.chars() {
            if c >= limit {
                break;
            }
            let ch = if (' '..='~').contains(&ch) { ch } else { '?' };
            if let Some(cell) = self.cells.get_mut(row * COLS + c) {
                *cell = Cell { ch, reverse };
            }
            c += 1;
        }
        c
    }

    /// The whole line in reverse video, padded to the right edge.
    pub fn bar(&mut self, row: usize, text: &str) {
        let padded = format!("{text:<COLS$}");
        self.put(row, 0, &padded, true);
    }

    /// The screen as plain text, one line per row, trailing blanks removed.
    pub fn text(&self) -> String {
        (0..ROWS)
            .map(|r| {
                let line: String = self.row(r).iter().map(|c| c.ch).collect();
                line.trim_end().to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Splits `text` into lines of at most `width` characters, breaking at
/// spaces where possible (long words are cut).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: String = word.to_string();
        loop {
            let need = if line.is_empty() {
                word.len()
            } else {
                line.len() + 1 + word.len()
            };
            if need <= width {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            let cut = word
                .char_indices()
                .nth(width)
                .map_or(word.len(), |(i, _)| i);
            lines.push(word[..cut].to_string());
            word = word[cut..].to_string();
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_clips_and_sanitises() {
        let mut g = Grid::new();
        let end = g.put(0, 78, "abcd", false);
        assert_eq!(end, 80);
        assert_eq!(g.cell(0, 79).ch, 'b');
        g.put(1, 0, "a\x1b[2Jb\u{e9}", false);
        assert_eq!(g.text().lines().nth(1), Some("a?[2Jb?"));
        g.put(23, 70, "0123456789", false);
        assert_eq!(g.cell(23, 79), Cell::BLANK);
        g.put(99, 0, "x", false);
    }

    #[test]
    fn wrap_breaks_at_spaces() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(wrap("abcdefgh", 3), vec!["abc", "def", "gh"]);
        assert_eq!(wrap("", 3), vec![""]);
    }
}
