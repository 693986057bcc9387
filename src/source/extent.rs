//! Byte extents: the currency between the used-block maps and the copy.

use serde::Serialize;

/// A half-open byte range `[offset, offset + len)` on a disk or partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// Sorted, non-overlapping, non-adjacent extents. Pushing in ascending order
/// merges neighbours, so a bitmap walk yields one extent per run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExtentList(Vec<Extent>);

impl ExtentList {
    pub fn new() -> Self {
        ExtentList(Vec::new())
    }

    /// Appends `[offset, offset+len)`. Extents must arrive in ascending order;
    /// one that starts before the end of the last is merged into it.
    pub fn push(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let end = offset.saturating_add(len);
        if let Some(last) = self.0.last_mut() {
            if offset <= last.end() {
                let new_end = end.max(last.end());
                last.len = new_end - last.offset;
                return;
            }
        }
        self.0.push(Extent {
            offset,
            len: end - offset,
        });
    }

    /// The extents shifted by `base` (partition start on the disk).
    pub fn shifted(&self, base: u64) -> ExtentList {
        let mut out = ExtentList::new();
        for e in &self.0 {
            out.push(e.offset.saturating_add(base), e.len);
        }
        out
    }

    pub fn total_bytes(&self) -> u64 {
        self.0.iter().map(|e| e.len).sum()
    }

    pub fn as_slice(&self) -> &[Extent] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_merges_adjacent_and_overlapping() {
        let mut l = ExtentList::new();
        l.push(0, 10);
        l.push(10, 5);
        l.push(12, 10);
        l.push(40, 0);
        l.push(50, 1);
        assert_eq!(
            l.as_slice(),
            &[Extent { offset: 0, len: 22 }, Extent { offset: 50, len: 1 }]
        );
        assert_eq!(l.total_bytes(), 23);
        assert_eq!(l.shifted(100).as_slice()[1].offset, 150);
    }
}
