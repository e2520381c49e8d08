//! SQLite backend (filled in by the store work).
pub struct SqliteStore;
