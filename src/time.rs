//! Time as sonde writes it: RFC 3339 for traces and APIs, durations the way people write them in
//! YAML, Unix milliseconds for state. One small module every room may use, so no room reaches up
//! into the engine for a formatter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sonde_probes::fmt_duration;
use sonde_probes::tls::fmt_unix;

/// Durations from milliseconds to weeks, the way people write them in YAML: "500ms", "1.5s",
/// "14d", "3d 4h".
pub fn fmt_long(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        return fmt_duration(d);
    }
    let (days, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    let sec = s % 60;
    let mut parts = Vec::new();
    if days > 0 {
        parts.push(format!("{days}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 && days == 0 {
        parts.push(format!("{m}m"));
    }
    if sec > 0 && days == 0 && h == 0 {
        parts.push(format!("{sec}s"));
    }
    parts.join(" ")
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let base = fmt_unix(d.as_secs() as i64);
    // "YYYY-MM-DDTHH:MM:SSZ" → insert milliseconds before the Z.
    format!("{}.{:03}Z", base.trim_end_matches('Z'), d.subsec_millis())
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Now, in Unix milliseconds, signed as template functions and notifiers want it.
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now()) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_durations_read_like_yaml() {
        assert_eq!(fmt_long(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(
            fmt_long(Duration::from_secs(3 * 86_400 + 4 * 3600 + 5)),
            "3d 4h"
        );
        assert_eq!(fmt_long(Duration::from_secs(90)), "1m 30s");
        assert_eq!(fmt_long(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn rfc3339_has_millis() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }
}
