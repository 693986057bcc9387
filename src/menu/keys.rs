//! Key decoding from raw terminal bytes.
//!
//! Hand-written: a VT100 sends at most the sequences below, and the decoder
//! must survive line noise on a serial port (a bounded buffer, garbage
//! dropped) — which a general terminal library does not promise.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Left,
    Right,
    Enter,
    Esc,
    Backspace,
    Tab,
    /// Ctrl-L: repaint the whole screen.
    Redraw,
    Char(char),
}

/// An escape sequence longer than this is garbage, not a key.
const MAX_SEQ: usize = 16;

#[derive(Debug, Default)]
pub struct KeyDecoder {
    /// Bytes of an escape sequence in progress (starting with ESC).
    seq: Vec<u8>,
    /// The last byte was CR: a following LF belongs to the same Enter.
    after_cr: bool,
    /// An over-long CSI sequence is being skipped up to its final byte, so
    /// its tail does not turn into typed keys.
    discarding: bool,
}

impl KeyDecoder {
    pub fn new() -> KeyDecoder {
        KeyDecoder::default()
    }

    /// True while an escape sequence is incomplete: the caller waits a
    /// little for more bytes and then calls `timeout`.
    pub fn pending(&self) -> bool {
        !self.seq.is_empty()
    }

    /// No more bytes came: a lone ESC is the Esc key; an incomplete
    /// sequence is dropped.
    pub fn timeout(&mut self) -> Option<Key> {
        let lone = self.seq == [0x1b];
        self.seq.clear();
        lone.then_some(Key::Esc)
    }

    pub fn feed_all(&mut self, bytes: &[u8]) -> Vec<Key> {
        bytes.iter().filter_map(|&b| self.feed(b)).collect()
    }

    pub fn feed(&mut self, b: u8) -> Option<Key> {
        let after_cr = std::mem::replace(&mut self.after_cr, false);
        if self.discarding {
            if (0x20..=0x3f).contains(&b) {
                return None;
            }
            self.discarding = false;
            if (0x40..=0x7e).contains(&b) {
                return None;
            }
        }
        if !self.seq.is_empty() {
            return self.feed_seq(b);
        }
        match b {
            0x1b => {
                self.seq.push(b);
                None
            }
            b'\r' => {
                self.after_cr = true;
                Some(Key::Enter)
            }
            b'\n' if after_cr => None,
            b'\n' => Some(Key::Enter),
            0x7f | 0x08 => Some(Key::Backspace),
            b'\t' => Some(Key::Tab),
            0x0c => Some(Key::Redraw),
            0x20..=0x7e => Some(Key::Char(b as char)),
            // Other control bytes and 8-bit garbage (wrong baud rate) are
            // not keys.
            _ => None,
        }
    }

    fn feed_seq(&mut self, b: u8) -> Option<Key> {
        if b == 0x1b {
            // ESC ESC: the first was a key on its own.
            let was_lone = self.seq == [0x1b];
            self.seq.clear();
            self.seq.push(b);
            return was_lone.then_some(Key::Esc);
        }
        self.seq.push(b);
        if self.seq.len() > MAX_SEQ {
            self.discarding = self.seq.starts_with(b"\x1b[");
            self.seq.clear();
            return None;
        }
        match self.seq.as_slice() {
            [0x1b, b'[' | b'O'] => None,
            [0x1b, b'O', f] => {
                let f = *f;
                self.seq.clear();
                arrow(f)
            }
            [0x1b, b'[', rest @ ..] => {
                let &last = rest.last()?;
                if (0x40..=0x7e).contains(&last) {
                    // A complete CSI sequence; only the bare arrows are keys.
                    let key = if rest.len() == 1 { arrow(last) } else { None };
                    self.seq.clear();
                    key
                } else if (0x20..=0x3f).contains(&last) {
                    None
                } else {
                    self.seq.clear();
                    None
                }
            }
            // ESC followed by anything else (Alt-x, noise): dropped.
            _ => {
                self.seq.clear();
                None
            }
        }
    }
}

fn arrow(f: u8) -> Option<Key> {
    match f {
        b'A' => Some(Key::Up),
        b'B' => Some(Key::Down),
        b'C' => Some(Key::Right),
        b'D' => Some(Key::Left),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_vt100_keys() {
        let mut d = KeyDecoder::new();
        assert_eq!(
            d.feed_all(b"\x1b[A\x1bOB\x1b[C\x1bOD\r\n\n\x7f\x08a1?\x0c\t"),
            vec![
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Enter,
                Key::Enter,
                Key::Backspace,
                Key::Backspace,
                Key::Char('a'),
                Key::Char('1'),
                Key::Char('?'),
                Key::Redraw,
                Key::Tab
            ]
        );
    }

    #[test]
    fn esc_alone_and_garbage() {
        let mut d = KeyDecoder::new();
        assert_eq!(d.feed_all(b"\x1b"), vec![]);
        assert!(d.pending());
        assert_eq!(d.timeout(), Some(Key::Esc));
        assert_eq!(d.feed_all(b"\x1b\x1b[B"), vec![Key::Esc, Key::Down]);
        // F5, a mouse report, an over-long sequence, 8-bit noise: no keys,
        // and the decoder is usable right after.
        assert_eq!(d.feed_all(b"\x1b[15~\x1b[<0;3;4M\xff\xfe\x01"), vec![]);
        let mut long = b"\x1b[".to_vec();
        long.extend(std::iter::repeat_n(b'1', 100));
        long.extend_from_slice(b"x");
        // The over-long sequence is dropped up to its final byte: no keys,
        // no unbounded buffer.
        assert_eq!(d.feed_all(&long), vec![]);
        long.pop();
        long.extend_from_slice(b"\x01q");
        assert_eq!(d.feed_all(&long), vec![Key::Char('q')]);
        assert_eq!(d.feed_all(b"\x1b[A"), vec![Key::Up]);
        assert_eq!(d.feed_all(b"\x1b["), vec![]);
        assert_eq!(d.timeout(), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_recovers(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = KeyDecoder::new();
            d.feed_all(&bytes);
            prop_assert!(d.seq.len() <= MAX_SEQ);
            d.timeout();
            prop_assert_eq!(d.feed_all(b"\x1b[Aq"), vec![Key::Up, Key::Char('q')]);
        }
    }
}
