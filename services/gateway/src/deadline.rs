//! The `grpc-timeout` header: what the client asked for, capped and defaulted by the settings,
//! and what the gateway tells the upstream. Pure functions, no I/O.

use std::time::Duration;

use http::HeaderValue;

use crate::config::DeadlineSettings;

/// The header carrying a call's remaining time.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Encodes `timeout` for `grpc-timeout` in the finest unit that fits the 8 digits allowed,
/// rounding up so the upstream never gets less time than the gateway waits.
pub fn encode(timeout: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos().max(1);
    let value = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ]
    .into_iter()
    .map(|(per_unit, unit)| (nanos.div_ceil(per_unit), unit))
    .find(|(amount, _)| *amount <= MAX)
    .map_or_else(
        || format!("{MAX}H"),
        |(amount, unit)| format!("{amount}{unit}"),
    );
    HeaderValue::from_str(&value).expect("digits and a unit letter are a valid header value")
}

/// How long a call may take: the client's `grpc-timeout` capped at `max_ms`, or `default_ms`
/// when it sent none (or an unreadable one).
pub fn effective(client: Option<&HeaderValue>, settings: &DeadlineSettings) -> Duration {
    client
        .and_then(parse)
        .map_or_else(|| settings.default(), |asked| asked.min(settings.max()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse(&value("2H")), Some(Duration::from_secs(7200)));
        assert_eq!(parse(&value("3M")), Some(Duration::from_secs(180)));
        assert_eq!(parse(&value("5S")), Some(Duration::from_secs(5)));
        assert_eq!(parse(&value("250m")), Some(Duration::from_millis(250)));
        assert_eq!(parse(&value("7u")), Some(Duration::from_micros(7)));
        assert_eq!(
            parse(&value("99999999n")),
            Some(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in ["", "m", "10", "10x", "-1S", "123456789S", "1.5S", " 1S"] {
            assert_eq!(parse(&value(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn encoding_round_trips_and_never_shortens() {
        for timeout in [
            Duration::from_nanos(1),
            Duration::from_micros(1500),
            Duration::from_millis(300),
            Duration::from_secs(30),
            Duration::from_secs(86_400),
        ] {
            let encoded = encode(timeout);
            assert!(encoded.len() <= 9, "{encoded:?}");
            let back = parse(&encoded).unwrap();
            assert!(back >= timeout, "{timeout:?} → {encoded:?}");
        }
        assert_eq!(encode(Duration::from_millis(300)), "300000u");
        assert_eq!(encode(Duration::from_secs(30)), "30000000u");
        assert_eq!(encode(Duration::ZERO), "1n");
    }

    #[test]
    fn the_client_deadline_is_capped_and_defaulted() {
        let settings = DeadlineSettings {
            default_ms: 1000,
            max_ms: 5000,
        };
        assert_eq!(effective(None, &settings), Duration::from_secs(1));
        assert_eq!(
            effective(Some(&value("oops")), &settings),
            Duration::from_secs(1)
        );
        assert_eq!(
            effective(Some(&value("200m")), &settings),
            Duration::from_millis(200)
        );
        assert_eq!(
            effective(Some(&value("1H")), &settings),
            Duration::from_secs(5)
        );
    }
}
