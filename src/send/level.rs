//! Which zstd level the workers use: steered, once a second, by whether the
//! link or the CPU is the bottleneck.
//!
//! On a slow link the physical limit is the compressed size: every level
//! the CPU can still sustain at link speed shrinks the copy's time. On a
//! fast link any compression the CPU cannot keep up with makes the link
//! wait. The connection thread sees which case it is in: if it never waits
//! for the workers (they always have chunks ready), the link is the
//! bottleneck and the level goes up one step; if it waits for them a
//! noticeable part of the time, the level is halved at once, so a link
//! that speeds up is never held back for long.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// One step of the controller: this often.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Waiting for the workers less than this share of a window: link-bound.
const LINK_BOUND: f64 = 0.02;
/// More than this: the link waits for the CPU.
const CPU_BOUND: f64 = 0.10;
/// Memory all workers' compression contexts may take together.
const MEMORY_BUDGET: u64 = 128 << 20;

/// What one worker's context takes for a 4 MiB chunk at the highest level
/// of each band (measured with `zstd --single-thread -L` on a 4 MiB chunk,
/// rounded up): the level is capped so that all workers fit the budget.
const CONTEXT_BYTES: [(i32, u64); 4] = [(3, 6 << 20), (6, 9 << 20), (9, 20 << 20), (19, 72 << 20)];

pub struct LevelControl {
    level: AtomicI32,
    max: i32,
}

impl LevelControl {
    /// Starts at level 1 (until a slow link shows itself), capped so that
    /// `workers` contexts fit the budget and a quarter of `mem_available`.
    pub fn new(workers: usize, mem_available: Option<u64>) -> Self {
        LevelControl {
            level: AtomicI32::new(1),
            max: max_level(workers, mem_available),
        }
    }

    pub fn current(&self) -> i32 {
        self.level.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> i32 {
        self.max
    }

    /// One window's evidence: the share of it the connection thread spent
    /// waiting for the workers. Returns the new level.
    pub fn adjust(&self, waited_share: f64) -> i32 {
        let now = self.current();
        let next = if waited_share < LINK_BOUND {
            (now + 1).min(self.max)
        } else if waited_share > CPU_BOUND {
            (now / 2).max(1)
        } else {
            now
        };
        self.level.store(next, Ordering::Relaxed);
        next
    }
}

/// The connection thread's clock for one window: how long it waited for
/// the workers since the window began.
pub struct Window {
    started: std::time::Instant,
    waited: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            started: std::time::Instant::now(),
            waited: Duration::ZERO,
        }
    }
}

impl Window {
    pub fn waited(&mut self, d: Duration) {
        self.waited += d;
    }

    /// At the end of a window, steers `control` and starts the next one.
    pub fn tick(&mut self, control: &LevelControl) {
        let len = self.started.elapsed();
        if len >= WINDOW {
            control.adjust(self.waited.as_secs_f64() / len.as_secs_f64());
            *self = Window::default();
        }
    }
}

/// The highest level whose contexts for `workers` fit the memory budget.
pub fn max_level(workers: usize, mem_available: Option<u64>) -> i32 {
    let budget = mem_available.map_or(MEMORY_BUDGET, |m| (m / 4).min(MEMORY_BUDGET));
    let workers = u64::try_from(workers.max(1)).unwrap_or(u64::MAX);
    CONTEXT_BYTES
        .iter()
        .filter(|(_, bytes)| workers.saturating_mul(*bytes) <= budget)
        .map(|(level, _)| *level)
        .max()
        .unwrap_or(1)
}

/// `MemAvailable` of /proc/meminfo, in bytes.
pub fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_link_raises_the_level_and_a_waiting_cpu_halves_it() {
        let c = LevelControl::new(1, None);
        assert_eq!(c.current(), 1);
        for want in 2..=8 {
            assert_eq!(c.adjust(0.0), want);
        }
        assert_eq!(c.adjust(0.05), 8, "in between: kept");
        assert_eq!(c.adjust(0.5), 4);
        assert_eq!(c.adjust(0.5), 2);
        assert_eq!(c.adjust(0.5), 1);
        assert_eq!(c.adjust(0.5), 1);
        for _ in 0..40 {
            c.adjust(0.0);
        }
        assert_eq!(c.current(), c.max());
    }

    #[test]
    fn the_level_is_capped_by_memory() {
        assert_eq!(max_level(1, None), 19);
        assert_eq!(max_level(2, None), 9);
        assert_eq!(max_level(6, None), 9);
        assert_eq!(max_level(8, None), 6);
        assert_eq!(max_level(64, None), 1);
        // A 256 MiB live system with 100 MiB available: 25 MiB for contexts.
        assert_eq!(max_level(2, Some(100 << 20)), 6);
    }
}
