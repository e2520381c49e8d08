//! Shared start-up steps: logging, opening the store, finding the master key.
use std::path::Path;
use std::sync::Arc;

use veto_core::keys::MasterKey;
use veto_store::{Database, PgStore, SqliteStore, Store};

use crate::cli::{LogFormat, MasterKeyArgs, StoreArgs};

pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The database `veto` runs on, migrated.
pub struct OpenedStore {
    pub store: Arc<dyn Database>,
}

/// Connections per node: enough for concurrent writes plus the follower and readiness probes,
/// few enough that dozens of nodes stay far below PostgreSQL's default `max_connections` (100).
const PG_POOL_SIZE: u32 = 10;

pub async fn open_store(args: &StoreArgs) -> Result<OpenedStore, String> {
    if let Some(url) = &args.database_url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "VETO_DATABASE_URL must be a postgres:// URL (got a URL of another scheme); unset it for the embedded store"
                    .into(),
            );
        }
        let pg = PgStore::connect(url, PG_POOL_SIZE)
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL at VETO_DATABASE_URL: {e}"))?;
        pg.migrate()
            .await
            .map_err(|e| format!("cannot migrate the PostgreSQL store: {e}"))?;
        return Ok(OpenedStore {
            store: Arc::new(pg),
        });
    }
    private_dir(&args.data_dir)?;
    let path = args.data_dir.join("veto.db");
    private_database_files(&path)?;
    let store = SqliteStore::open(&path)
        .await
        .map_err(|e| format!("cannot open the embedded store {}: {e}", path.display()))?;
    store
        .migrate()
        .await
        .map_err(|e| format!("cannot migrate the store: {e}"))?;
    Ok(OpenedStore {
        store: Arc::new(store),
    })
}

/// Creates the data directory readable by its owner only (0700), or narrows an existing one:
/// it holds the database (sessions, IP addresses, pre-login state, the audit trail) and maybe the
/// generated master key and admin key.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    owner_only(dir, 0o700)
}

/// Creates the embedded database file 0600 before SQLite does (SQLite gives its journal files
/// the database file's mode), and narrows existing ones.
fn private_database_files(db: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)
            .map_err(|e| format!("cannot create the embedded store {}: {e}", db.display()))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        if path.exists() {
            owner_only(&path, 0o600)?;
        }
    }
    Ok(())
}

/// Narrows `path` to `mode` when group or others may access it, saying so.
fn owner_only(path: &Path, mode: u32) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the permissions of {}: {e}", path.display()))?;
        let current = meta.permissions().mode() & 0o777;
        if current & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
                format!(
                    "cannot narrow {} (mode {current:o}) to {mode:o}: {e}",
                    path.display()
                )
            })?;
            tracing::warn!(path = %path.display(), was = format!("{current:o}"), now = format!("{mode:o}"), "narrowed permissions: other local users could read it");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Writes a secret file readable by its owner only, narrowing an existing file's mode first (an
/// existing file keeps its mode on open, so a 0644 file would otherwise receive the secret).
pub fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// The master key from the flag/env, the key file, or (first start without either) a key
/// generated into the data directory, with a warning.
pub fn master_key(
    inline: Option<&str>,
    file: Option<&Path>,
    data_dir: &Path,
) -> Result<MasterKey, String> {
    if let Some(b64) = inline {
        return MasterKey::from_base64(b64.trim()).map_err(|e| e.to_string());
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read VETO_MASTER_KEY_FILE {}: {e}", path.display()))?;
        return MasterKey::from_base64(text.trim()).map_err(|e| e.to_string());
    }
    let path = data_dir.join("master.key");
    if path.exists() {
        owner_only(&path, 0o600)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return MasterKey::from_base64(text.trim()).map_err(|e| e.to_string());
    }
    let key = MasterKey::generate();
    // On PostgreSQL nothing else lives in the data directory, so it may not exist yet.
    private_dir(data_dir)?;
    write_secret_file(&path, &key.to_base64())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "generated a master key next to the data; production must pass its own with VETO_MASTER_KEY \
         (32 random bytes in base64, see `veto gen-master-key`) or VETO_MASTER_KEY_FILE, kept apart from the data"
    );
    Ok(key)
}

/// The master key, also opening what the previous one sealed when VETO_MASTER_KEY_PREVIOUS (or
/// its file) is set.
pub fn master_keys(args: &MasterKeyArgs, data_dir: &Path) -> Result<MasterKey, String> {
    let key = master_key(
        args.master_key.as_deref(),
        args.master_key_file.as_deref(),
        data_dir,
    )?;
    Ok(match previous_master_key(args)? {
        Some(previous) => key.with_previous(&previous),
        None => key,
    })
}

/// VETO_MASTER_KEY_PREVIOUS, or the key in VETO_MASTER_KEY_PREVIOUS_FILE, if either is set.
pub fn previous_master_key(args: &MasterKeyArgs) -> Result<Option<MasterKey>, String> {
    let text = match (&args.master_key_previous, &args.master_key_previous_file) {
        (Some(b64), _) => b64.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read VETO_MASTER_KEY_PREVIOUS_FILE {}: {e}",
                path.display()
            )
        })?,
        (None, None) => return Ok(None),
    };
    MasterKey::from_base64(text.trim())
        .map(Some)
        .map_err(|e| format!("VETO_MASTER_KEY_PREVIOUS: {e}"))
}

pub fn new_master_key_b64() -> String {
    // veto-core's one RNG helper, which says why a failing system RNG is fatal.
    MasterKey::generate().to_base64().to_string()
}
