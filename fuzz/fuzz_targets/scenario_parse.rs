//! The scenario parser on arbitrary bytes: it must return a scenario or a
//! positioned error, never panic; and an error's position lies in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match scenario::parse_bytes("fuzz.scn", data) {
        Ok(sc) => {
            assert!(!sc.setup.eras.is_empty(), "a parsed scenario always has an era");
        }
        Err(e) => {
            if let Some((line, _col)) = e.position() {
                let lines = data.split(|&b| b == b'\n').count() as u32;
                assert!(line <= lines.max(1), "error line {line} past the input's {lines} lines");
            }
            // Rendering the error must not panic either.
            let _ = e.to_string();
        }
    }
});
