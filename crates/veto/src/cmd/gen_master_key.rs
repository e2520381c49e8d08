pub fn run() -> Result<(), String> {
    println!("{}", crate::setup::new_master_key_b64());
    Ok(())
}
