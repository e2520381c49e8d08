//! veto's pure domain: what a tenant, a key, a token and a revocation are, and the rules that decide
//! whether a token is good. Nothing in this crate performs I/O: the store and the HTTP layer feed it
//! data and act on its answers, which keeps every rule testable in-process and fast.
//!
//! The public modules are the domain. Underneath them, private modules hold what several of them
//! share (`encoding`, `random`, `secret`, `input`, `seal`). Those import nothing from the domain
//! but the leaf `alg` (a `KeyError` names the algorithm), so imports only point down and no
//! domain module needs another to get at randomness, encoding, secrets or sealing. What other
//! crates use from them is re-exported at its domain path (`keys::MasterKey`,
//! `session::InputError`, `apikey::hash_secret`, ...).
#![forbid(unsafe_code)]
// A panic in the authority is a denial of service at best; library code reports errors instead.
// The one exception, `random::fill`, says why it cannot fire.
// Unit tests are exempt (cfg(test)), and so are tests/ and benches/, which are crates of their own.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod alg;
pub mod apikey;
pub mod audit;
pub mod check;
pub mod cookie;
pub mod index;
pub mod input;
pub mod json_scan;
pub mod keyring;
pub mod keys;
pub mod limits;
pub mod oauth_scope;
pub mod prelogin;
pub mod reason;
pub mod refresh;
pub mod revocation;
pub mod session;
pub mod ssf;
pub mod status_list;
pub mod strict_json;
pub mod tenant;
pub mod timeutil;
pub mod token;
pub mod verify;

mod encoding;
mod random;
mod seal;
mod secret;

pub use alg::Alg;
pub use reason::Reason;
