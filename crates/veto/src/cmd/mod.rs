//! One file per subcommand.
pub mod gen_master_key;
pub mod master_key;
pub mod migrate;
pub mod purge;
pub mod serve;
