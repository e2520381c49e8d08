//! `veto gen-master-key`: prints a fresh master key (32 random bytes, base64) for
//! `VETO_MASTER_KEY`.
pub fn run() -> Result<(), String> {
    println!("{}", crate::setup::new_master_key_b64());
    Ok(())
}
