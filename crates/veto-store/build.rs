// `sqlx::migrate!` embeds the files under `migrations/` at compile time; without this, cargo
// would not notice a new migration file and keep serving the old embedded set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
