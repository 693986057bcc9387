//! LVM2's text metadata format: nested `name { ... }` sections holding
//! `key = value` lines, where a value is a string, an integer, a float or a
//! flat array `[ "pv0", 0 ]`; `#` starts a comment that runs to the line end.
//!
//! Hand-written because no crate parses this format. The input is at most
//! the 1 MiB the caller read; nesting and the number of items are bounded
//! as well, so a hostile text cannot exhaust the stack or memory.

/// Deeper than any real metadata (VG / logical_volumes / LV / segment is 4).
const MAX_DEPTH: usize = 16;
/// Items (sections, keys and array elements) in one text; a VG with a
/// thousand LVs holds some 30000.
const MAX_ITEMS: usize = 200_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    /// Kept as written: metadata has no floats p2xen needs, and this keeps
    /// `Value` comparable.
    Float(String),
    Array(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Value(Value),
    Section(Section),
}

/// One `key = value` or `name { ... }`, with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: String,
    pub line: usize,
    pub node: Node,
}

/// The items of a section (or of the whole text) in their written order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    pub line: usize,
    pub items: Vec<Item>,
}

impl Section {
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.key == key)
    }

    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.items.iter().filter_map(|i| match &i.node {
            Node::Section(s) => Some((i.key.as_str(), s)),
            Node::Value(_) => None,
        })
    }
}

/// Where and why the text is not LVM2 metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata text line {line}: {what}")]
pub struct TextError {
    pub line: usize,
    pub what: TextFault,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextFault {
    #[error("unexpected {0:?}")]
    Unexpected(char),
    #[error("unexpected end of text")]
    End,
    #[error("string not closed")]
    OpenString,
    #[error("number {0:?} out of range")]
    Number(String),
    #[error("sections nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("more than {MAX_ITEMS} items")]
    TooManyItems,
    #[error("arrays cannot hold arrays")]
    NestedArray,
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
    line: usize,
    items: usize,
}

/// Parses a whole metadata text. Trailing NULs (the on-disk copy ends in
/// one) are ignored.
pub fn parse(text: &[u8]) -> Result<Section, TextError> {
    let end = text.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    let mut p = Parser {
        b: text.get(..end).unwrap_or_default(),
        pos: 0,
        line: 1,
        items: 0,
    };
    let top = p.section_body(0)?;
    match p.peek() {
        None => Ok(top),
        Some(c) => Err(p.fault(TextFault::Unexpected(char::from(c)))),
    }
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'-' | b'.' | b'/' | b'@')
}

impl Parser<'_> {
    fn fault(&self, what: TextFault) -> TextError {
        TextError {
            line: self.line,
            what,
        }
    }

    /// The next significant byte, after blanks and comments.
    fn peek(&mut self) -> Option<u8> {
        loop {
            let c = *self.b.get(self.pos)?;
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    while self.b.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => return Some(c),
            }
        }
    }

    fn count(&mut self) -> Result<(), TextError> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(self.fault(TextFault::TooManyItems));
        }
        Ok(())
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self.b.get(self.pos).copied().is_some_and(is_word) {
            self.pos += 1;
        }
        String::from_utf8_lossy(self.b.get(start..self.pos).unwrap_or_default()).into_owned()
    }

    /// Items up to the closing `}` (depth > 0) or the end of the text.
    fn section_body(&mut self, depth: usize) -> Result<Section, TextError> {
        let mut sec = Section {
            line: self.line,
            items: Vec::new(),
        };
        loop {
            let Some(c) = self.peek() else {
                if depth > 0 {
                    return Err(self.fault(TextFault::End));
                }
                return Ok(sec);
            };
            if c == b'}' && depth > 0 {
                self.pos += 1;
                return Ok(sec);
            }
            if !is_word(c) {
                return Err(self.fault(TextFault::Unexpected(char::from(c))));
            }
            self.count()?;
            let line = self.line;
            let key = self.word();
            let node = match self.peek() {
                Some(b'{') => {
                    if depth + 1 > MAX_DEPTH {
                        return Err(self.fault(TextFault::TooDeep));
                    }
                    self.pos += 1;
                    Node::Section(self.section_body(depth + 1)?)
                }
                Some(b'=') => {
                    self.pos += 1;
                    Node::Value(self.value(true)?)
                }
                Some(c) => return Err(self.fault(TextFault::Unexpected(char::from(c)))),
                None => return Err(self.fault(TextFault::End)),
            };
            sec.items.push(Item { key, line, node });
        }
    }

    fn value(&mut self, array_ok: bool) -> Result<Value, TextError> {
        match self.peek() {
            None => Err(self.fault(TextFault::End)),
            Some(b'"') => {
                self.pos += 1;
                self.string().map(Value::Str)
            }
            Some(b'[') if !array_ok => Err(self.fault(TextFault::NestedArray)),
            Some(b'[') => {
                self.pos += 1;
                self.array()
            }
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => self.number(),
            Some(c) => Err(self.fault(TextFault::Unexpected(char::from(c)))),
        }
    }

    /// A string after its opening quote; `\x` stands for `x` (lvm escapes
    /// `"` and `\` this way).
    fn string(&mut self) -> Result<String, TextError> {
        let mut out = Vec::new();
        let start_line = self.line;
        let open = || TextError {
            line: start_line,
            what: TextFault::OpenString,
        };
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return Err(open());
            };
            self.pos += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let Some(&e) = self.b.get(self.pos) else {
                        return Err(open());
                    };
                    self.pos += 1;
                    if e == b'\n' {
                        self.line += 1;
                    }
                    out.push(e);
                }
                b'\n' => {
                    self.line += 1;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Value, TextError> {
        let w = self.word();
        if w.contains('.') {
            return match w.parse::<f64>() {
                Ok(_) => Ok(Value::Float(w)),
                Err(_) => Err(self.fault(TextFault::Number(w))),
            };
        }
        w.parse::<i64>()
            .map(Value::Int)
            .map_err(|_| self.fault(TextFault::Number(w)))
    }

    fn array(&mut self) -> Result<Value, TextError> {
        let mut v = Vec::new();
        loop {
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(v));
                }
                None => return Err(self.fault(TextFault::End)),
                _ => {}
            }
            self.count()?;
            v.push(self.value(false)?);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {}
                Some(c) => return Err(self.fault(TextFault::Unexpected(char::from(c)))),
                None => return Err(self.fault(TextFault::End)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(s: &'a Section, path: &[&str]) -> &'a Node {
        let (last, dirs) = path.split_last().unwrap();
        let mut s = s;
        for d in dirs {
            match &s.get(d).unwrap().node {
                Node::Section(x) => s = x,
                other => panic!("{d}: {other:?}"),
            }
        }
        &s.get(last).unwrap().node
    }

    #[test]
    fn nesting_comments_arrays_and_escapes() {
        let t = br#"# header comment
vg {
	id = "abc"	# trailing comment
	seqno = 7
	status = ["READ", "WRITE"]
	flags = []
	lvs {
		root {
			stripes = [
				"pv0", 0,
				"pv1", -3
			]
			note = "a \"quoted\" \\ back#slash"
			ratio = 1.5
		}
	}
}
contents = "Text Format Volume Group"
version = 1
"#;
        let top = parse(t).unwrap();
        assert_eq!(
            value(&top, &["vg", "id"]),
            &Node::Value(Value::Str("abc".into()))
        );
        assert_eq!(value(&top, &["vg", "seqno"]), &Node::Value(Value::Int(7)));
        assert_eq!(
            value(&top, &["vg", "flags"]),
            &Node::Value(Value::Array(vec![]))
        );
        assert_eq!(
            value(&top, &["vg", "lvs", "root", "stripes"]),
            &Node::Value(Value::Array(vec![
                Value::Str("pv0".into()),
                Value::Int(0),
                Value::Str("pv1".into()),
                Value::Int(-3),
            ]))
        );
        assert_eq!(
            value(&top, &["vg", "lvs", "root", "note"]),
            &Node::Value(Value::Str(r#"a "quoted" \ back#slash"#.into()))
        );
        assert_eq!(
            value(&top, &["vg", "lvs", "root", "ratio"]),
            &Node::Value(Value::Float("1.5".into()))
        );
        assert_eq!(top.get("version").unwrap().line, 19);
        assert_eq!(top.get("vg").unwrap().line, 2);
        // The on-disk copy ends in a NUL.
        assert_eq!(parse(b"a = 1\n\0").unwrap().items.len(), 1);
    }

    #[test]
    fn faults_carry_the_line() {
        let cases: &[(&[u8], usize, TextFault)] = &[
            (b"vg {\n a = 1\n", 3, TextFault::End),
            (b"vg {\n a = \"x\n", 2, TextFault::OpenString),
            (
                b"a = 99999999999999999999",
                1,
                TextFault::Number("99999999999999999999".into()),
            ),
            (b"a = [[1]]", 1, TextFault::NestedArray),
            (b"a = [1 2]", 1, TextFault::Unexpected('2')),
            (b"\n\n}", 3, TextFault::Unexpected('}')),
            (b"a = 1 =", 1, TextFault::Unexpected('=')),
            (b"a b", 1, TextFault::Unexpected('b')),
        ];
        for (t, line, what) in cases {
            let e = parse(t).unwrap_err();
            assert_eq!(
                (&e.line, &e.what),
                (line, what),
                "{:?}",
                String::from_utf8_lossy(t)
            );
        }
        let deep = "a {".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()).unwrap_err().what, TextFault::TooDeep);
        let many = "[".to_string() + &"1,".repeat(MAX_ITEMS) + "]";
        assert_eq!(
            parse(format!("a = {many}").as_bytes()).unwrap_err().what,
            TextFault::TooManyItems
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let _ = parse(&data);
        }

        #[test]
        fn never_panics_on_mutated_metadata(
            at in 0usize..600,
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..8),
            cut in 0usize..600,
        ) {
            let mut t = br#"vg { id = "x" seqno = 1 lvs { a { stripes = ["pv0", 0] s = "q\"" } } } version = 1
    "#.to_vec();
            for (i, b) in bytes.iter().enumerate() {
                if let Some(c) = t.get_mut(at.wrapping_add(i) % 90) {
                    *c = *b;
                }
            }
            t.truncate(cut.max(1));
            let _ = parse(&t);
        }
    }
}
