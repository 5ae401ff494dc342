//! include/ptemu.h is what cbindgen makes of the crate today.
//!
//! Regenerate after changing the C API:
//!     PTEMU_BLESS=1 cargo test -p ptemu-capi --test header

use std::path::Path;

#[test]
fn checked_in_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen could not read the crate");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("cbindgen wrote UTF-8");
    let path = dir.join("include/ptemu.h");
    if std::env::var_os("PTEMU_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/ptemu.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/ptemu.h is stale: regenerate it with \
         `PTEMU_BLESS=1 cargo test -p ptemu-capi --test header` and commit it"
    );
}
