//! Inputs the cargo-fuzz targets (fuzz/, docs/explore.md) found, kept as
//! regression tests so they are checked without nightly or libFuzzer.

use ptemu_pgtable::entry_kind::MAX_L1TF_SWAP_OFFSET;
use ptemu_pgtable::{
    EntryError, EntryFormat, EntryKind, Level, SwapPte, decode, encode, encode_swap,
};

const LEVELS: [Level; 4] = [Level::Pt, Level::Pd, Level::Pdpt, Level::Pml4];

/// fuzz/pte_decode: 0x80 (only bit 7) decodes in the classic format as the
/// swap entry type 0 offset 0; that entry's encoding was 0, which decodes as
/// none. Encoding it is now an error, and what re-encodes decodes the same.
#[test]
fn classic_swap_type0_offset0_is_not_encoded_as_none() {
    let zero = SwapPte { swap_type: 0, offset: 0, ..Default::default() };
    assert_eq!(
        encode_swap(zero, EntryFormat::Classic),
        Err(EntryError::SwapEncodesAsNone { swap_type: 0, offset: 0 })
    );
    // The L1TF layout stores the offset inverted: (0, 0) is not zero there,
    // but type 0 with the largest offset is (0x80 decodes as it).
    assert_ne!(encode_swap(zero, EntryFormat::L1tf), Ok(0));
    let top = SwapPte { swap_type: 0, offset: MAX_L1TF_SWAP_OFFSET, ..Default::default() };
    assert_eq!(
        encode_swap(top, EntryFormat::L1tf),
        Err(EntryError::SwapEncodesAsNone { swap_type: 0, offset: MAX_L1TF_SWAP_OFFSET })
    );
    for raw in [0x80u64, 0x100, 0x180, 0x1, 0x2, 0x200] {
        for level in LEVELS {
            for format in [EntryFormat::Classic, EntryFormat::L1tf] {
                let Ok(kind) = decode(raw, level, format) else { continue };
                if let Ok(again) = encode(&kind, level, format) {
                    assert_eq!(
                        decode(again, level, format),
                        Ok(kind),
                        "{raw:#x} -> {again:#x} at {level:?} {format:?}"
                    );
                }
            }
        }
    }
    // The first slot a device hands out (1) still encodes as Linux does.
    let one = SwapPte { swap_type: 0, offset: 1, ..Default::default() };
    assert_eq!(encode_swap(one, EntryFormat::Classic), Ok(0x200));
    assert!(
        matches!(decode(0x200, Level::Pt, EntryFormat::Classic), Ok(EntryKind::Swap(s)) if s == one)
    );
}
