//! `veto`: the token authority's server and command line.
#![forbid(unsafe_code)]
// Errors reach the operator as messages naming the fix, never as a panic's backtrace.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod cli;
mod cmd;
mod setup;

use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    let matches = cli::Cli::command().get_matches();
    if let Err(e) = cli::refuse_secrets_on_the_command_line(&matches) {
        eprintln!("error: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    setup::init_logging(&cli.log, cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            cli::Command::Serve(args) => cmd::serve::run(args).await,
            cli::Command::Migrate(args) => cmd::migrate::run(args).await,
            cli::Command::Purge(args) => cmd::purge::run(args).await,
            cli::Command::GenMasterKey => cmd::gen_master_key::run(),
            cli::Command::MasterKey(cli::MasterKeyCommand::Rotate(args)) => {
                cmd::master_key::rotate(args).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
