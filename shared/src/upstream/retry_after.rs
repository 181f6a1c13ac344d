//! The `Retry-After` header: delay-seconds or an HTTP date, read against the caller's clock.

use std::time::{Duration, UNIX_EPOCH};

/// Waits longer than this are cut to it: Mercado Livre's budgets are hourly, so a longer
/// wait is a broken header, and honouring it would block an account for good.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How long `value` asks to wait from `now_ms`; `None` when it is neither form.
pub fn parse(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let date = httpdate::parse_http_date(value).ok()?;
        let date_ms = date.duration_since(UNIX_EPOCH).ok()?.as_millis();
        let date_ms = i64::try_from(date_ms).unwrap_or(i64::MAX);
        Duration::from_millis(u64::try_from(date_ms.saturating_sub(now_ms)).unwrap_or(0))
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Wed, 21 Oct 2015 07:28:00 GMT
    const DATE_MS: i64 = 1_445_412_480_000;

    #[test]
    fn reads_delay_seconds() {
        assert_eq!(parse("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 ", 0), Some(Duration::ZERO));
    }

    #[test]
    fn reads_an_http_date_against_the_given_clock() {
        let header = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(
            parse(header, DATE_MS - 10_500),
            Some(Duration::from_millis(10_500))
        );
        assert_eq!(
            parse(header, DATE_MS + 1),
            Some(Duration::ZERO),
            "a past date"
        );
    }

    #[test]
    fn caps_absurd_waits_and_refuses_garbage() {
        assert_eq!(parse("99999999999999999999999", 0), Some(MAX_RETRY_AFTER));
        assert_eq!(parse("86400", 0), Some(MAX_RETRY_AFTER));
        for garbage in ["", "-5", "1.5", "soon", "Wed, 21 Oct 2015"] {
            assert_eq!(parse(garbage, 0), None, "{garbage:?}");
        }
    }
}
