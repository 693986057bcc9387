//! fnmatch(3)-style matching of modalias patterns from `modules.alias`.
//!
//! kmod matches aliases with fnmatch(3) without flags: `*`, `?`, and bracket
//! expressions `[...]` with ranges and `!`/`^` negation. Written here because
//! the crates that do globbing (glob, globset) target paths (`/` is special
//! to them, `**`, character classes) and we need exactly fnmatch semantics.

/// True when `text` matches `pattern` as fnmatch(pattern, text, 0) would.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last '*': (pattern index after '*', text index).
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match bracket(pattern, p, text[t]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                // An unterminated '[' is an ordinary character, as in fnmatch.
                None => (text[t] == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(&c) => (c == text[t]).then_some(p + 1),
            None => None,
        };
        match step {
            Some(next) => {
                p = next;
                t += 1;
            }
            None => match backtrack {
                // Let the last '*' swallow one more character and retry.
                Some((bp, bt)) => {
                    backtrack = Some((bp, bt + 1));
                    p = bp;
                    t = bt + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression starting at `pattern[start] == '['`.
/// Returns (matched, index after ']'), or None if the bracket is unterminated.
fn bracket(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(pattern.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        // A ']' right after '[' or '[!' is a literal member.
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = pattern[i + 2];
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;
    use proptest::prelude::*;

    fn m(p: &str, t: &str) -> bool {
        matches(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("virtio:d00000002v*", "virtio:d00000002v00001AF4"));
        assert!(!m("virtio:d00000002v*", "virtio:d00000001v00001AF4"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*", ""));
        assert!(m("**a**", "xxa"));
        assert!(!m("", "a"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(!m("a*b*c", "a-b-b-"));
    }

    #[test]
    fn brackets() {
        assert!(m("pci:v0000[89]086*", "pci:v00008086d1"));
        assert!(m("x[a-c]y", "xby"));
        assert!(!m("x[a-c]y", "xdy"));
        assert!(m("x[!a-c]y", "xdy"));
        assert!(!m("x[^a-c]y", "xby"));
        assert!(m("x[]]y", "x]y"));
        assert!(m("x[a-]y", "x-y"));
        // Unterminated bracket: a literal '['.
        assert!(m("x[ab", "x[ab"));
    }

    #[test]
    fn real_alias_shapes() {
        // From Debian 6.1's modules.alias (ahci, e1000, sd_mod).
        let ahci = "pci:v*d*sv*sd*bc01sc06i01*";
        assert!(m(
            ahci,
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"
        ));
        assert!(!m(
            ahci,
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc01i80"
        ));
        assert!(m("scsi:t-0x00*", "scsi:t-0x00"));
        assert!(m(
            "pci:v00008086d0000100Esv*sd*bc*sc*i*",
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"
        ));
    }

    proptest! {
        #[test]
        fn never_panics(p in proptest::collection::vec(any::<u8>(), 0..40),
                        t in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = matches(&p, &t);
        }

        #[test]
        fn star_matches_everything(t in "[ -~]{0,40}") {
            prop_assert!(matches(b"*", t.as_bytes()));
            prop_assert!(matches(t.replace(['*', '?', '[', '\\'], "").as_bytes(),
                                 t.replace(['*', '?', '[', '\\'], "").as_bytes()));
        }
    }
}
