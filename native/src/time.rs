//! Event times: RFC 3339 text to epoch microseconds, as the Python lanes read them.

/// Epoch microseconds of an RFC 3339 time with a zone, as `streams.readers_columns.bulk_times`
/// reads it (same pattern, ASCII digits only); None for anything else.
pub(crate) fn epoch_us(stamp: &str) -> Option<i64> {
    let b = stamp.as_bytes();
    let digits = |at: usize, n: usize| -> Option<i64> {
        let mut value = 0i64;
        for &c in b.get(at..at + n)? {
            if !c.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(c - b'0');
        }
        Some(value)
    };
    let punctuation = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if b.len() < 20 || punctuation.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let mut at = 19;
    let mut micros = 0i64;
    if b[at] == b'.' {
        let start = at + 1;
        at = start;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let n = at - start;
        if !(1..=6).contains(&n) {
            return None;
        }
        micros = digits(start, n)? * 10i64.pow((6 - n) as u32);
    }
    let zone = &b[at..];
    let offset_minutes = if zone == b"Z" {
        0
    } else if zone.len() == 6 && (zone[0] == b'+' || zone[0] == b'-') && zone[3] == b':' {
        let (hours, minutes) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
        if hours > 23 || minutes > 59 {
            return None;
        }
        (if zone[0] == b'+' { 1 } else { -1 }) * (hours * 60 + minutes)
    } else {
        return None;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year == 0
        || !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000_000 + micros - offset_minutes * 60_000_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_match_the_calendar() {
        assert_eq!(epoch_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            epoch_us("2024-05-01T00:00:01.5Z"),
            Some(1_714_521_601_500_000)
        );
        assert_eq!(
            epoch_us("2024-05-01T02:00:00+02:00"),
            Some(1_714_521_600_000_000)
        );
        assert_eq!(epoch_us("2024-02-30T00:00:00Z"), None);
        assert_eq!(epoch_us("2024-05-01T00:00:00.1234567Z"), None);
        assert_eq!(epoch_us("2024-05-01 00:00:00Z"), None);
        assert_eq!(epoch_us("0000-05-01T00:00:00Z"), None);
    }
}
