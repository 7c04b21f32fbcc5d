//! Goldmane's time rules: `0` as start means the oldest bucket held (or now, for streams), `0`
//! as end means now, a negative value is seconds before now; after that start < end.

use thiserror::Error;

/// A time range that resolves to nothing.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("start_time_gte ({start}) must be before start_time_lt ({end}) once resolved against now ({now})")]
pub struct BadRange {
    start: i64,
    end: i64,
    now: i64,
}

/// Resolves a `List`/`FilterHints`/`Statistics` range.
pub fn resolve(
    start_gte: i64,
    start_lt: i64,
    now: i64,
    oldest: i64,
) -> Result<(i64, i64), BadRange> {
    let start = match start_gte {
        0 => oldest,
        negative if negative < 0 => now + negative,
        absolute => absolute,
    };
    let end = match start_lt {
        0 => now + 1,
        negative if negative < 0 => now + negative,
        absolute => absolute,
    };
    if start >= end {
        return Err(BadRange { start, end, now });
    }
    Ok((start, end))
}

/// Resolves a stream's start: `None` means live only, no backfill.
pub fn resolve_stream_start(start_gte: i64, now: i64) -> Option<i64> {
    match start_gte {
        0 => None,
        negative if negative < 0 => Some(now + negative),
        absolute => Some(absolute),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goldmane_time_rules() {
        assert_eq!(resolve(0, 0, 1000, 100), Ok((100, 1001)));
        assert_eq!(resolve(-300, 0, 1000, 100), Ok((700, 1001)));
        assert_eq!(resolve(500, -100, 1000, 100), Ok((500, 900)));
        assert!(resolve(900, 800, 1000, 100).is_err());
        assert_eq!(resolve_stream_start(0, 1000), None);
        assert_eq!(resolve_stream_start(-60, 1000), Some(940));
    }
}
