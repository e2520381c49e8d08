//! veto's pure domain: what a tenant, a key, a token and a revocation are, and the rules that decide
//! whether a token is good. Nothing in this crate performs I/O: the store and the HTTP layer feed it
//! data and act on its answers, which keeps every rule testable in-process and fast.
#![forbid(unsafe_code)]

pub mod alg;
pub mod apikey;
pub mod audit;
pub mod cookie;
pub mod index;
pub mod keyring;
pub mod keys;
pub mod prelogin;
pub mod reason;
pub mod refresh;
pub mod revocation;
pub mod session;
pub mod tenant;
pub mod timeutil;
pub mod token;
pub mod verify;

pub use alg::Alg;
pub use reason::Reason;
