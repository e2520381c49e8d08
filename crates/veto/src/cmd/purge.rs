//! `veto purge`: the purge sweep from the command line, with a progress bar.
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::PurgeArgs;

pub async fn run(args: PurgeArgs) -> Result<(), String> {
    if args.safety_margin_seconds < args.clock_skew_seconds {
        return Err(format!(
            "--safety-margin-seconds must be at least the clock-skew leeway ({} s, VETO_CLOCK_SKEW_SECONDS): a token is accepted that long after it expires, and purging its row sooner would let it through again",
            args.clock_skew_seconds
        ));
    }
    let opened = crate::setup::open_store(&args.store).await?;
    let store = opened.store.clone();
    let before = veto_core::timeutil::now() - time::Duration::seconds(args.safety_margin_seconds);
    // The number of rows to delete is unknown up front (counting would scan the ledger), so
    // the bar is a spinner that counts deleted rows batch by batch.
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} purging: {pos} rows deleted ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let total =
        veto_server::service::purge::purge_all(store.as_ref(), before, args.batch, |c, _| {
            bar.inc(c.revocations + c.cutoffs + c.signing_keys + c.status_entries);
            std::future::ready(Ok(()))
        })
        .await
        .map_err(|e| format!("purge failed: {e}"))?;
    // Sessions and refresh families stay until every token carrying their id has expired.
    let linger = time::Duration::seconds(args.max_token_ttl_seconds);
    let sessions = veto_server::service::purge::purge_sessions_all(
        opened.store.as_ref(),
        before,
        linger,
        args.batch,
        |p, _| {
            let n = p.sessions.len() + p.refresh_families.len() + p.session_keys.len();
            bar.inc(n as u64 + p.prelogin);
            std::future::ready(Ok(()))
        },
    )
    .await
    .map_err(|e| format!("session purge failed: {e}"))?;
    bar.finish_with_message("done");
    let summary = veto_server::service::purge::summary(&total, &sessions);
    println!("{summary}");
    Ok(())
}
