//! Bandwidth limits (`send --limit`, `receive --limit`, `p2xen.limit=`): the
//! rate syntax both ends accept, and the pacer that holds a stream to it.
//!
//! A migration over a production network must leave room for other
//! traffic. The pacer delays writes (sender) or reads (receiver; TCP's flow
//! control then slows the sender down) so that the bytes moved never run
//! more than one burst ahead of `rate × elapsed`.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// A limit in bytes per second (never zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bandwidth limit {0:?}: use a number with an optional unit: 50M or 50MiB (bytes per second, powers of 1024), 800Mbit (bits per second), or off"
)]
pub struct RateError(pub String);

impl Rate {
    pub fn bytes_per_sec(self) -> u64 {
        self.0
    }

    /// `None` for "off" (and "0", "none", "unlimited"): no limit.
    pub fn parse_limit(s: &str) -> Result<Option<Rate>, RateError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "unlimited" | "0" => Ok(None),
            _ => s.parse().map(Some),
        }
    }
}

/// A limit as given on a command line: a rate, or none ("off").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<Rate>);

impl FromStr for Limit {
    type Err = RateError;
    fn from_str(s: &str) -> Result<Self, RateError> {
        Rate::parse_limit(s).map(Limit)
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, RateError> {
        let bad = || RateError(s.to_string());
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit.strip_suffix("/s").unwrap_or(&unit);
        let factor = match unit {
            "" | "b" => 1.0,
            "k" | "kib" => 1024.0,
            "m" | "mib" => 1024.0 * 1024.0,
            "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
            "kbit" => 1e3 / 8.0,
            "mbit" => 1e6 / 8.0,
            "gbit" => 1e9 / 8.0,
            _ => return Err(bad()),
        };
        let bytes = value * factor;
        // Below 1 KiB/s a 4 MiB chunk takes over an hour: surely a typo.
        if !bytes.is_finite() || !(1024.0..=1e15).contains(&bytes) {
            return Err(bad());
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "bytes is finite and within 1024..=1e15, checked above"
        )]
        Ok(Rate(bytes as u64))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.1} MiB/s ({:.0} Mbit/s)",
            self.0 as f64 / 1048576.0,
            self.0 as f64 * 8.0 / 1e6
        )
    }
}

/// Credit an idle stream may save up, so a pause (a receiver busy syncing)
/// is not followed by an unlimited burst. A fresh pacer starts with none:
/// a start-up burst of a whole second made a 7 s copy at 200 Mbit/s average
/// 224 Mbit/s (bench B2), and a limit is a promise over any stretch of time.
const BURST: Duration = Duration::from_millis(200);

/// Holds a stream to a [`Rate`]; without one it never waits.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: Option<Rate>,
    /// When the bytes moved so far are due at the rate.
    due: Option<Instant>,
}

impl Pacer {
    pub fn new(rate: Option<Rate>) -> Self {
        Pacer { rate, due: None }
    }

    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// A new limit applies from now on.
    pub fn set_rate(&mut self, rate: Option<Rate>) {
        self.rate = rate;
        self.due = None;
    }

    /// How long to wait, at `now`, after moving `bytes` more.
    pub fn delay(&mut self, now: Instant, bytes: u64) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let floor = now.checked_sub(BURST).unwrap_or(now);
        let due = self.due.map_or(now, |d| d.max(floor));
        let due = due + Duration::from_secs_f64(bytes as f64 / rate.0 as f64);
        self.due = Some(due);
        due.saturating_duration_since(now)
    }

    /// Sleeps as [`Pacer::delay`] says.
    pub fn pace(&mut self, bytes: u64) {
        let wait = self.delay(Instant::now(), bytes);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_bytes_and_bits() {
        let r = |s: &str| s.parse::<Rate>().map(Rate::bytes_per_sec);
        assert_eq!(r("50M"), Ok(50 << 20));
        assert_eq!(r("50MiB/s"), Ok(50 << 20));
        assert_eq!(r("1.5G"), Ok(3 << 29));
        assert_eq!(r("800Mbit"), Ok(100_000_000));
        assert_eq!(r("100 mbit/s"), Ok(12_500_000));
        assert_eq!(r("65536"), Ok(65536));
        for bad in ["", "fast", "10X", "-5M", "1.2.3M", "100", "1e400G"] {
            assert!(r(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Rate::parse_limit("off"), Ok(None));
        assert_eq!(Rate::parse_limit("0"), Ok(None));
        let e = Rate::parse_limit("lots").unwrap_err().to_string();
        assert!(e.contains("\"lots\"") && e.contains("800Mbit"), "{e}");
    }

    #[test]
    fn the_pacer_holds_the_rate_and_saves_at_most_a_burst() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mb = 1 << 20;
        let mut p = Pacer::new(Some(Rate(mb)));
        // No start-up credit: each MiB waits its second from the start.
        assert_eq!(p.delay(t0, mb), Duration::from_secs(1));
        assert_eq!(p.delay(t0, mb), Duration::from_secs(2));
        // Idle for a minute: only the burst (200 ms) of credit was kept.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(p.delay(later, mb / 5), Duration::ZERO);
        let next = p.delay(later, mb);
        assert!(
            next.abs_diff(Duration::from_secs(1)) < Duration::from_millis(1),
            "{next:?}"
        );
        // A new limit starts afresh; no limit never waits.
        p.set_rate(Some(Rate(2 * mb)));
        assert_eq!(p.delay(later, 2 * mb), Duration::from_secs(1));
        assert_eq!(p.delay(later, mb), Duration::from_millis(1500));
        p.set_rate(None);
        assert_eq!(p.delay(later, 1 << 40), Duration::ZERO);
    }
}
