//! Points in time on the command line: `@1764582000000` (ms since the epoch),
//! `2026-12-01T10:00:00Z` (RFC 3339, any offset), or `-10m` (that long ago; `ms`, `s`,
//! `m`, `h`, `d`).

/// Milliseconds since the epoch of a point in time, relative ones against `now_ms`.
pub fn parse(s: &str, now_ms: i64) -> Result<i64, String> {
    if let Some(ms) = s.strip_prefix('@') {
        return ms
            .parse::<i64>()
            .ok()
            .filter(|ms| *ms >= 0)
            .ok_or_else(|| format!("`{s}`: expected @<ms since the epoch>"));
    }
    if let Some(ago) = s.strip_prefix('-') {
        return duration_ms(ago)
            .map(|d| now_ms.saturating_sub(d))
            .ok_or_else(|| format!("`{s}`: expected a duration ago like -30s, -10m, -2h, -1d"));
    }
    rfc3339(s).ok_or_else(|| format!("`{s}`: expected @<ms>, an RFC 3339 time (2026-12-01T10:00:00Z) or -<duration>"))
}

/// `500ms`, `30s`, `10m`, `2h`, `1d` in milliseconds.
pub fn duration_ms(s: &str) -> Option<i64> {
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` in ms since the epoch.
fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.find(|c: char| !c.is_ascii_digit()).unwrap_or(frac.len());
        if digits == 0 {
            return None;
        }
        let ms: String = frac[..digits].chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 60 + o[4..6].parse::<i64>().ok()?)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3_600 + minute * 60 + second) - offset_min * 60) * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_in_time() {
        assert_eq!(parse("@1764582000000", 0), Ok(1_764_582_000_000));
        assert_eq!(parse("1970-01-01T00:00:00Z", 0), Ok(0));
        assert_eq!(parse("2026-12-01T10:00:00Z", 0), Ok(1_796_119_200_000));
        assert_eq!(parse("2026-12-01T11:00:00.250+01:00", 0), Ok(1_796_119_200_250));
        assert_eq!(parse("2000-02-29T00:00:00Z", 0), Ok(951_782_400_000));
        assert_eq!(parse("-10m", 1_000_000), Ok(400_000));
        assert_eq!(parse("-500ms", 1_000), Ok(500));
        for bad in ["", "@", "@-1", "-10", "-10y", "2026-13-01T00:00:00Z", "2026-12-01T10:00:00", "yesterday"] {
            assert!(parse(bad, 0).is_err(), "{bad}");
        }
    }
}
