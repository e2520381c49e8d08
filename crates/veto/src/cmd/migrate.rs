//! `veto migrate`: applies pending migrations to the configured store and exits.
use crate::cli::StoreArgs;

pub async fn run(args: StoreArgs) -> Result<(), String> {
    // Opening applies the migrations.
    crate::setup::open_store(&args).await?;
    tracing::info!("migrations applied");
    Ok(())
}
