//! Token issuance (filled in by the crypto work).
