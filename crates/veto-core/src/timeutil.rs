//! Time helpers. Records carry `OffsetDateTime` (RFC 3339 in JSON); JWT claims carry NumericDate
//! seconds. These convert between the two without ever panicking on caller-supplied values.
use time::OffsetDateTime;

/// `OffsetDateTime` serialised as RFC 3339 in UTC, the contract's format for times in JSON bodies.
pub use time::serde::rfc3339;

/// Current time truncated to whole seconds: every stored and compared time in veto has second
/// precision, like the JWT NumericDate it is compared with, so `iat == cutoff` compares exactly.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Seconds since the epoch to a time, or `None` when out of the representable range.
pub fn from_unix(secs: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(secs).ok()
}
