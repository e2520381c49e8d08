//! The operations behind the routes. Each one validates first (so bad input writes nothing),
//! commits to the store, then updates the in-memory state, then returns: see `state` for why
//! in that order.
pub mod apikeys;
pub mod bootstrap;
pub mod issuance;
pub mod keys;
pub mod purge;
pub mod refresh;
pub mod revocations;
pub mod sessions;
pub mod tenants;
pub mod tokens;

use crate::error::ApiError;

/// Free-text fields (reasons, names) are bounded so a caller cannot store megabytes in a row that
/// is read back on every list.
pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::field(field, format!("at most {max} bytes")));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(ApiError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

pub(crate) fn check_opt_text(field: &str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    value.map_or(Ok(()), |v| check_text(field, v, max))
}

/// Identifiers that end up in keys and paths (jti, sub, names): non-empty and bounded.
pub(crate) fn check_ident(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    check_text(field, value, max)
}
