//! What `ptemu pte decode` runs, on any 64-bit value at any level in both
//! formats: decode, the flag names, the reserved bits, the protection key.
//! Whatever decodes must encode back to an entry that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgtable::entry::{flag_names, pkey, reserved_bits_set};
use pgtable::{EntryFormat, Level, decode, encode};

fuzz_target!(|data: [u8; 9]| {
    let raw = u64::from_le_bytes(data[..8].try_into().unwrap());
    let level = [Level::Pt, Level::Pd, Level::Pdpt, Level::Pml4][usize::from(data[8] & 3)];
    let format = if data[8] & 4 == 0 { EntryFormat::L1tf } else { EntryFormat::Classic };
    let maxphyaddr = 1 + (data[8] >> 3) % 52;
    let _ = flag_names(raw, level);
    let _ = reserved_bits_set(raw, level, maxphyaddr, data[8] & 0x80 != 0);
    let _ = pkey(raw);
    if let Ok(kind) = decode(raw, level, format) {
        if let Ok(again) = encode(&kind, level, format) {
            assert_eq!(
                decode(again, level, format).ok(),
                Some(kind),
                "{raw:#018x} -> {again:#018x} at {level:?} {format:?}"
            );
        }
    }
});
