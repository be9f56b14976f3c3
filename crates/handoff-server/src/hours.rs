//! Business hours of a project: weekly opening intervals in the project's local time (a fixed
//! offset from UTC). Outside them the widget shows the offline form even when an agent is online.
//!
//! Written on the command line as `mon-fri 09:00-17:00, sat 10:00-14:00` with `--utc-offset +01:00`.
//! A project without hours is always open.

use serde::{Deserialize, Serialize};

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: i64 = 24 * 60;

/// A weekly schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessHours {
    /// Minutes east of UTC of the local time the intervals are written in.
    pub utc_offset_minutes: i32,
    /// Open intervals per weekday, Monday first: `[open, close)` in minutes since local midnight.
    pub days: [Vec<(u16, u16)>; 7],
}

/// Why a schedule could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("business hours: {0}")]
pub struct HoursError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, HoursError> {
    Err(HoursError(msg.into()))
}

fn day(name: &str) -> Result<usize, HoursError> {
    let name = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| name.starts_with(d) && d.len() <= name.len())
        .map_or_else(|| err(format!("`{name}` is not a weekday (mon, tue, ...)")), Ok)
}

fn minutes(hhmm: &str) -> Result<u16, HoursError> {
    let bad = || HoursError(format!("`{hhmm}` is not a time (HH:MM)"));
    let (h, m) = hhmm.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Reads `+HH:MM`, `-HH:MM` or `Z`.
///
/// # Errors
/// For anything else, or offsets beyond ±14 h.
pub fn parse_offset(s: &str) -> Result<i32, HoursError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") || s == "0" {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return err(format!("`{s}` is not a UTC offset (+HH:MM)")),
    };
    let m = i32::from(minutes(rest)?);
    if m > 14 * 60 {
        return err(format!("`{s}` is beyond ±14:00"));
    }
    Ok(sign * m)
}

impl BusinessHours {
    /// Reads `mon-fri 09:00-17:00, sat 10:00-14:00`: comma-separated entries of a weekday or a
    /// weekday range (which may wrap, as `sat-sun`) and one interval; `24:00` closes at midnight.
    ///
    /// # Errors
    /// A message naming the part that could not be read.
    pub fn parse(spec: &str, utc_offset_minutes: i32) -> Result<Self, HoursError> {
        let mut hours = BusinessHours { utc_offset_minutes, days: Default::default() };
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (days, interval) = entry
                .split_once(char::is_whitespace)
                .ok_or_else(|| HoursError(format!("`{entry}` needs days and a time range")))?;
            let (from, to) = match days.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None => (day(days)?, day(days)?),
            };
            let (open, close) = interval
                .trim()
                .split_once('-')
                .ok_or_else(|| HoursError(format!("`{interval}` is not a time range (HH:MM-HH:MM)")))?;
            let (open, close) = (minutes(open)?, minutes(close)?);
            if close <= open {
                return err(format!("`{interval}` closes before it opens"));
            }
            let mut d = from;
            loop {
                hours.days[d].push((open, close));
                if d == to {
                    break;
                }
                d = (d + 1) % 7;
            }
        }
        if hours.days.iter().all(Vec::is_empty) {
            return err("no opening hours given");
        }
        Ok(hours)
    }

    /// Whether the project is open at `now_ms` (milliseconds since the Unix epoch).
    pub fn is_open(&self, now_ms: u64) -> bool {
        let local_minutes =
            i64::try_from(now_ms / 60_000).unwrap_or(i64::MAX) + i64::from(self.utc_offset_minutes);
        let days = local_minutes.div_euclid(MINUTES_PER_DAY);
        let minute = local_minutes.rem_euclid(MINUTES_PER_DAY);
        // 1970-01-01 was a Thursday (index 3 with Monday first).
        let weekday = usize::try_from((days + 3).rem_euclid(7)).unwrap_or(0);
        self.days[weekday].iter().any(|&(open, close)| minute >= i64::from(open) && minute < i64::from(close))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `at(day, h, m)`: `day` days after Monday 2025-11-24 (0 = that Monday), at h:m UTC.
    fn at(day: u64, h: u64, m: u64) -> u64 {
        const MONDAY: u64 = 1_763_942_400_000; // 2025-11-24T00:00:00Z
        MONDAY + day * 86_400_000 + h * 3_600_000 + m * 60_000
    }

    #[test]
    fn reference_monday_is_a_monday() {
        let h = BusinessHours::parse("mon 00:00-24:00", 0).unwrap();
        assert!(h.is_open(at(0, 12, 0)));
        assert!(!h.is_open(at(1, 12, 0)));
        assert!(!h.is_open(at(6, 23, 59)));
        assert!(h.is_open(at(7, 0, 0)));
    }

    #[test]
    fn weekdays_nine_to_five_on_both_sides_of_each_edge() {
        let h = BusinessHours::parse("mon-fri 09:00-17:00", 0).unwrap();
        assert!(!h.is_open(at(0, 8, 59)));
        assert!(h.is_open(at(0, 9, 0)));
        assert!(h.is_open(at(4, 16, 59)));
        assert!(!h.is_open(at(4, 17, 0)));
        assert!(!h.is_open(at(5, 12, 0)), "saturday");
        assert!(!h.is_open(at(6, 12, 0)), "sunday");
    }

    #[test]
    fn offsets_shift_the_local_day() {
        // 09:00-17:00 at UTC+02:00 is 07:00-15:00 UTC.
        let h = BusinessHours::parse("mon-fri 09:00-17:00", parse_offset("+02:00").unwrap()).unwrap();
        assert!(h.is_open(at(0, 7, 0)));
        assert!(!h.is_open(at(0, 15, 0)));
        // Monday 01:00 local at UTC-05:00 is Monday 06:00 UTC; Sunday 23:00 UTC is Sunday 18:00 local.
        let h = BusinessHours::parse("mon 00:00-02:00", parse_offset("-05:00").unwrap()).unwrap();
        assert!(h.is_open(at(0, 6, 0)));
        assert!(!h.is_open(at(0, 4, 59)));
    }

    #[test]
    fn several_entries_and_wrapping_ranges() {
        let h = BusinessHours::parse("sat-sun 10:00-12:00, wed 08:00-09:00, wed 13:00-14:00", 0).unwrap();
        assert!(h.is_open(at(5, 10, 0)) && h.is_open(at(6, 11, 59)));
        assert!(h.is_open(at(2, 8, 30)) && h.is_open(at(2, 13, 30)));
        assert!(!h.is_open(at(2, 10, 0)));
        assert!(!h.is_open(at(0, 10, 0)));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for bad in ["", "mon", "funday 09:00-17:00", "mon 9-17", "mon 17:00-09:00", "mon 09:00-24:30"] {
            assert!(BusinessHours::parse(bad, 0).is_err(), "{bad}");
        }
        assert!(parse_offset("+15:00").is_err());
        assert!(parse_offset("0100").is_err());
        assert_eq!(parse_offset("-03:30").unwrap(), -210);
        assert_eq!(parse_offset("Z").unwrap(), 0);
    }
}
