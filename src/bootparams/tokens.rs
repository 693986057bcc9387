//! Splitting a kernel command line into `key[=value]` parameters exactly the
//! way the kernel's `next_arg()` (lib/cmdline.c) does, so that a value the
//! kernel accepted means the same to us.
//!
//! The rules, mirrored from the kernel: double quotes group words (there is no
//! escape for a quote); a parameter that starts with `"` loses that quote and a
//! trailing one; a value that starts with `"` loses that quote and a trailing
//! one; quotes anywhere else are kept literally; the first `=` that is not the
//! first character splits key and value.

/// One parameter as the kernel split it. Both sides borrow from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    pub key: &'a str,
    /// `None` for a bare flag (`quiet`), `Some("")` for `key=`.
    pub value: Option<&'a str>,
}

/// The kernel's `isspace()` for the ASCII range. Every split point is ASCII,
/// so slicing the `&str` at these byte offsets always lands on a char boundary.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn skip_spaces(b: &[u8], mut pos: usize) -> usize {
    while b.get(pos).is_some_and(|&c| is_space(c)) {
        pos += 1;
    }
    pos
}

/// Splits `line` (e.g. the contents of /proc/cmdline) into parameters.
/// Empty parameters (a lone `""`) are dropped, as the kernel ignores them.
pub fn split(line: &str) -> Vec<Param<'_>> {
    let bytes = line.as_bytes();
    let mut params = Vec::new();
    let mut pos = skip_spaces(bytes, 0);
    while pos < bytes.len() {
        let (param, next) = next_arg(line, pos);
        if !(param.key.is_empty() && param.value.is_none()) {
            params.push(param);
        }
        pos = skip_spaces(bytes, next);
    }
    params
}

/// One step of the kernel's `next_arg()`: the parameter starting at `start`
/// and the offset just past it.
fn next_arg(line: &str, start: usize) -> (Param<'_>, usize) {
    let b = line.as_bytes();
    let mut s = start;
    let mut in_quote = false;
    let mut quoted = false;
    if b.get(s) == Some(&b'"') {
        s += 1;
        in_quote = true;
        quoted = true;
    }
    let mut end = s;
    let mut equals = None;
    while let Some(&c) = b.get(end) {
        if is_space(c) && !in_quote {
            break;
        }
        // The kernel stores the position of '=' in an index that uses 0 for
        // "none", so an '=' in the very first position is not a separator.
        if equals.is_none() && c == b'=' && end > s {
            equals = Some(end);
        }
        if c == b'"' {
            in_quote = !in_quote;
        }
        end += 1;
    }
    let next = if end < b.len() { end + 1 } else { end };
    let ends_in_quote = end > s && b.get(end - 1) == Some(&b'"');
    let param = match equals {
        None => {
            let key_end = if quoted && ends_in_quote {
                end - 1
            } else {
                end
            };
            Param {
                key: &line[s..key_end],
                value: None,
            }
        }
        Some(eq) => {
            let mut v_start = eq + 1;
            let mut v_end = end;
            if b.get(v_start) == Some(&b'"') && v_start < end {
                v_start += 1;
                if ends_in_quote {
                    // The closing quote may be the opening one itself (`k="`):
                    // then the value is empty, never a reversed range.
                    v_end = (end - 1).max(v_start);
                }
            } else if quoted && ends_in_quote {
                v_end = (end - 1).max(v_start);
            }
            Param {
                key: &line[s..eq],
                value: Some(&line[v_start..v_end]),
            }
        }
    };
    (param, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kv(line: &str) -> Vec<(String, Option<String>)> {
        split(line)
            .into_iter()
            .map(|p| (p.key.to_string(), p.value.map(str::to_string)))
            .collect()
    }

    fn p(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn plain_params_and_flags() {
        assert_eq!(
            kv("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n"),
            vec![
                p("BOOT_IMAGE", Some("/vmlinuz")),
                p("root", Some("/dev/sda1")),
                p("ro", None),
                p("quiet", None)
            ]
        );
    }

    #[test]
    fn quoted_value() {
        assert_eq!(
            kv(r#"p2xen.name="a b" x"#),
            vec![p("p2xen.name", Some("a b")), p("x", None)]
        );
    }

    #[test]
    fn quoted_whole_param() {
        assert_eq!(
            kv(r#""p2xen.name=a b"  y"#),
            vec![p("p2xen.name", Some("a b")), p("y", None)]
        );
        assert_eq!(kv(r#""just a flag""#), vec![p("just a flag", None)]);
    }

    #[test]
    fn inner_quotes_are_kept_literally() {
        // The kernel only strips a quote that opens the value or the parameter.
        assert_eq!(
            kv(r#"k=a"b c"d e"#),
            vec![p("k", Some(r#"a"b c"d"#)), p("e", None)]
        );
    }

    #[test]
    fn unterminated_quote_runs_to_the_end() {
        assert_eq!(kv(r#"k="a b c"#), vec![p("k", Some("a b c"))]);
    }

    #[test]
    fn empty_and_quote_only_values() {
        assert_eq!(
            kv(r#"a= b="" c=""#),
            vec![p("a", Some("")), p("b", Some("")), p("c", Some(""))]
        );
    }

    #[test]
    fn leading_equals_is_not_a_separator() {
        assert_eq!(kv("=x =a=b"), vec![p("=x", None), p("=a", Some("b"))]);
    }

    #[test]
    fn value_keeps_later_equals() {
        assert_eq!(kv("ip=a=b"), vec![p("ip", Some("a=b"))]);
    }

    #[test]
    fn all_kernel_whitespace_separates() {
        assert_eq!(
            kv("a\tb\x0bc\x0cd\re\n"),
            ["a", "b", "c", "d", "e"].map(|k| p(k, None))
        );
    }

    #[test]
    fn lone_quotes_are_dropped() {
        assert_eq!(kv(r#""" a"#), vec![p("a", None)]);
        assert_eq!(kv(r#"""#), vec![]);
    }

    proptest! {
        #[test]
        fn split_never_panics(line in ".*") {
            let _ = split(&line);
        }

        #[test]
        fn quoting_a_value_roundtrips(key in "[a-z.]{1,12}", value in "[^\"]{0,20}") {
            let line = format!("{key}=\"{value}\"");
            prop_assert_eq!(kv(&line), vec![p(&key, Some(&value))]);
        }
    }
}
