//! Refusing caller input: the error returned for a bad field, and the length and alphabet check
//! most fields share.
//!
//! A module of its own so that sessions, pre-login state and whatever comes next refuse input the
//! same way (which lets the HTTP layer turn any of them into one problem shape) without
//! importing each other to do it.

/// Caller input that was refused, naming the field as the contract's JSON names it, so the HTTP
/// layer can put `field` into its problem response without a mapping table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InputError {
    pub field: &'static str,
    pub problem: String,
}

impl InputError {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        InputError {
            field,
            problem: problem.into(),
        }
    }
}

/// Checks that `value` is `min..=max` bytes, each byte accepted by `allowed`. Bytes rather than
/// chars, so the limit is the storage cost whatever the script.
pub(crate) fn check_bytes(
    field: &'static str,
    value: &str,
    min: usize,
    max: usize,
    allowed: fn(char) -> bool,
    what: &str,
) -> Result<(), InputError> {
    if value.len() < min || value.len() > max {
        return Err(InputError::new(
            field,
            format!("must be {min} to {max} bytes long, got {}", value.len()),
        ));
    }
    if !value.chars().all(allowed) {
        return Err(InputError::new(field, format!("may contain only {what}")));
    }
    Ok(())
}

/// A free-text field (a reason, a name): at most `max` bytes, no control characters. Empty is
/// allowed (an empty reason says as much as none).
pub fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), InputError> {
    if value.len() > max {
        return Err(InputError::new(field, format!("at most {max} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(InputError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// An identifier (see [`crate::limits::IDENTIFIER`]): like [`check_text`], and not empty.
pub fn check_ident(field: &'static str, value: &str, max: usize) -> Result<(), InputError> {
    if value.is_empty() {
        return Err(InputError::new(field, "must not be empty"));
    }
    check_text(field, value, max)
}
