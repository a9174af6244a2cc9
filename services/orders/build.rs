// `embed_migrations!` reads the migrations folder at compile time; without this a new
// migration would not rebuild the binaries that embed them.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
