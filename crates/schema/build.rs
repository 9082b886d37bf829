// `sqlx::migrate!` embeds the migrations when this crate compiles; without this, cargo would
// not know to compile it again when one is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
