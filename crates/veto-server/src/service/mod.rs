//! The operations behind the routes. Each one validates first (so bad input writes nothing),
//! commits to the store, then applies the write to memory (`mirror`), then returns: see
//! docs/architecture.md ("Writes") for why in that order.
pub mod apikeys;
pub mod bootstrap;
pub mod grants;
pub mod issuance;
pub mod keys;
pub mod purge;
pub mod refresh;
pub mod revocations;
pub mod sessions;
pub mod status_lists;
pub mod tenants;
pub mod tokens;

use veto_core::input;

use crate::error::ApiError;

/// The domain's checks (`veto_core::input`), answered as the contract's 400 naming the field.
/// Free text (reasons, names) is bounded so a caller cannot store megabytes in a row that is read
/// back on every list; limits come from `veto_core::limits`.
pub(crate) fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    input::check_text(field, value, max).map_err(ApiError::from)
}

pub(crate) fn check_opt_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<(), ApiError> {
    value.map_or(Ok(()), |v| check_text(field, v, max))
}

/// Identifiers that end up in keys and paths (jti, sub, names): non-empty and bounded.
pub(crate) fn check_ident(field: &'static str, value: &str, max: usize) -> Result<(), ApiError> {
    input::check_ident(field, value, max).map_err(ApiError::from)
}
