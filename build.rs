// Rebuild when a migration changes: `sqlx::migrate!` embeds mysql/schemas.
fn main() {
    println!("cargo:rerun-if-changed=mysql/schemas");
}
