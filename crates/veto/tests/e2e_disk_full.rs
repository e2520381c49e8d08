//! The embedded store on a full disk (issue 11, finding 2): writes fail with a clear 503 and
//! nothing acknowledged is lost, `/readyz` says the store cannot write, and once space is freed
//! the node writes again without a restart.
//!
//! The disk is a real one: a 4 MiB tmpfs mounted for the test, filled with a file. Mounting
//! needs root; the README's test command (CI) runs as root and sets `VETO_REQUIRE_FAULT_TESTS=1`,
//! which turns "cannot mount" into a failure instead of a skip.
mod common;
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

const R: &str = "/v1/tenants/default/revocations";

/// A mounted tmpfs (unmounted on drop), inside a temporary directory.
struct Tmpfs {
    mnt: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        // Root mounts it directly; another user through passwordless sudo, if it has that.
        let opts = format!("size={size},mode=0777");
        let args = ["-t", "tmpfs", "-o", &opts, "tmpfs"];
        let ran = |c: &mut Command| c.arg(&mnt).status().is_ok_and(|s| s.success());
        let ok = ran(Command::new("mount").args(args))
            || ran(Command::new("sudo").args(["-n", "mount"]).args(args));
        if !ok {
            let required = std::env::var("VETO_REQUIRE_FAULT_TESTS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "VETO_REQUIRE_FAULT_TESTS=1 but a tmpfs cannot be mounted (not root?)"
            );
            eprintln!(
                "skipped: cannot mount a tmpfs (run as root, as the README's test command does)"
            );
            return None;
        }
        Some(Tmpfs { mnt, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("sudo")
                .args(["-n", "umount", "-l"])
                .arg(&self.mnt)
                .status();
        }
    }
}

/// Fills the file system holding `dir` with `filler`, leaving (almost) nothing free.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    filler
}

#[tokio::test]
async fn a_full_disk_fails_writes_cleanly_and_the_node_writes_again_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let data = fs.mnt.join("data");
    let data_s = data.to_str().unwrap().to_owned();
    let mut srv = Server::start_with(&[
        ("VETO_DATA_DIR", &data_s),
        // The embedded store whatever the pass: this is its failure mode.
        ("VETO_DATABASE_URL", ""),
    ])
    .await;
    // Some acknowledged revocations before the disk fills.
    for i in 0..20 {
        srv.post(R, json!({"jti": format!("before-{i}")}))
            .await
            .expect(StatusCode::CREATED);
    }
    let filler = fill(&fs.mnt);
    // Writes fail with 503 (never a 5xx other than that, never a false 201) until space is back.
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let jti = format!("during-{i}");
        let r = srv
            .post_expecting_outage(R, json!({"jti": jti, "reason": "x".repeat(400)}))
            .await;
        match r.status {
            StatusCode::CREATED => acknowledged.push(jti),
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("{other}: {}", r.text),
        }
    }
    assert!(refused > 0, "the disk never filled up");
    let ready = srv.get_public("/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text
    );
    assert!(ready.text.contains("cannot write"), "{}", ready.text);

    // Space comes back: the node writes again, without a restart, and says it is ready.
    std::fs::remove_file(&filler).expect("free the space");
    eventually_within(
        "writes succeed again",
        std::time::Duration::from_secs(15),
        || async {
            srv.post_expecting_outage(R, json!({"jti": "after"}))
                .await
                .status
                == StatusCode::CREATED
        },
    )
    .await;
    eventually_within(
        "ready again",
        std::time::Duration::from_secs(15),
        || async { srv.get_public("/readyz").await.status == StatusCode::OK },
    )
    .await;

    // Nothing acknowledged was lost, across a crash too.
    srv.crash_and_restart();
    for jti in (0..20)
        .map(|i| format!("before-{i}"))
        .chain(acknowledged)
        .chain(["after".to_owned()])
    {
        srv.get(&format!("{R}/{jti}")).await.expect(StatusCode::OK);
    }
}
