//! `veto master-key rotate`: re-seals every stored secret from the previous master key to the
//! new one, while servers keep serving (docs/deployment.md, "Rotating the master key").
//!
//! Safe with running nodes: every node already runs with the new key and the previous one, so
//! it opens a row sealed by either, and seals anything new with the new key. Each batch is one
//! transaction replacing a blob only where the row still holds the blob that was read
//! (compare-and-swap), so a row written or deleted meanwhile is left as the server left it. A
//! blob that already opens under the new key is skipped, which makes a re-run harmless.
use indicatif::{ProgressBar, ProgressStyle};
use veto_core::keys::MasterKey;
use veto_store::{Resealed, SealedKind};

use crate::cli::RotateArgs;

pub async fn rotate(args: RotateArgs) -> Result<(), String> {
    let new = match (&args.keys.master_key, &args.keys.master_key_file) {
        (None, None) => {
            return Err(
                "give the new master key as VETO_MASTER_KEY or VETO_MASTER_KEY_FILE".into(),
            );
        }
        (inline, file) => {
            crate::setup::master_key(inline.as_deref(), file.as_deref(), &args.store.data_dir)?
        }
    };
    let previous = crate::setup::previous_master_key(&args.keys)?.ok_or(
        "give the master key being replaced as VETO_MASTER_KEY_PREVIOUS or VETO_MASTER_KEY_PREVIOUS_FILE",
    )?;
    if *new.to_base64() == *previous.to_base64() {
        return Err("VETO_MASTER_KEY and VETO_MASTER_KEY_PREVIOUS are the same key".into());
    }
    let opened = crate::setup::open_store(&args.store).await?;
    let store = opened.store;

    // The number of rows is unknown up front: a spinner counts them batch by batch.
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} re-sealing {msg}: {pos} rows ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut summary = serde_json::Map::new();
    for kind in SealedKind::ALL {
        bar.set_message(kind.as_str());
        let counts = rotate_kind(store.as_ref(), kind, &new, &previous, args.batch, &bar).await?;
        summary.insert(kind.as_str().replace([' ', '-'], "_"), counts);
    }
    bar.finish_with_message("done");
    println!("{}", serde_json::json!({ "master_key_rotation": summary }));
    Ok(())
}

async fn rotate_kind(
    store: &dyn veto_store::Store,
    kind: SealedKind,
    new: &MasterKey,
    previous: &MasterKey,
    batch: u32,
    bar: &ProgressBar,
) -> Result<serde_json::Value, String> {
    let (mut resealed, mut already, mut changed) = (0u64, 0u64, 0u64);
    let mut after: Option<(String, String)> = None;
    loop {
        let from = after.as_ref().map(|(t, i)| (t.as_str(), i.as_str()));
        let page = store
            .sealed_page(kind, from, batch)
            .await
            .map_err(|e| format!("cannot read the {}: {e}", kind.as_str()))?;
        let Some(last) = page.last() else { break };
        after = Some((last.tenant.clone(), last.id.clone()));
        let mut out = Vec::with_capacity(page.len());
        for b in &page {
            match new.reseal(previous, kind, &b.tenant, &b.id, &b.sealed) {
                Ok(None) => already += 1,
                Ok(Some(sealed)) => out.push(Resealed {
                    tenant: b.tenant.clone(),
                    id: b.id.clone(),
                    old: b.sealed.clone(),
                    new: sealed,
                }),
                Err(_) => {
                    return Err(format!(
                        "{} {:?} of tenant {:?} opens under neither VETO_MASTER_KEY nor VETO_MASTER_KEY_PREVIOUS; \
                         is one of them wrong? (the rows before it are re-sealed; re-running is harmless)",
                        kind.as_str(),
                        b.id,
                        b.tenant
                    ));
                }
            }
        }
        let n = store
            .reseal(kind, &out)
            .await
            .map_err(|e| format!("cannot re-seal the {}: {e}", kind.as_str()))?;
        resealed += n;
        changed += out.len() as u64 - n;
        bar.inc(page.len() as u64);
    }
    Ok(serde_json::json!({
        "resealed": resealed,
        "already_new": already,
        "changed_meanwhile": changed,
    }))
}
