//! The verify pipeline (filled in by the crypto work).
