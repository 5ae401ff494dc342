//! The hardware walk, the side-effect-free lookup and the entry lookup over
//! arbitrary table memory: up to 16 frames of fuzzer bytes, CR3 and the
//! virtual address and CPU state from the input's head. No panic, no
//! out-of-bounds access (an entry pointing outside memory is an error), and
//! lookup agrees with the walk on where a present leaf is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgtable::walk::{Access, CpuState};
use pgtable::{PhysAddr, VirtAddr, entry_at, lookup, translate};

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (head, body) = data.split_at(16);
    let va_raw = u64::from_le_bytes(head[..8].try_into().unwrap());
    let ctl = u64::from_le_bytes(head[8..].try_into().unwrap());
    let frames = body.len().div_ceil(4096).clamp(1, 16);
    let mut mem = vec![0u8; frames * 4096];
    let n = body.len().min(mem.len());
    mem[..n].copy_from_slice(&body[..n]);
    let cr3 = PhysAddr::new_truncate(((ctl & 0xf) % frames as u64) << 12);
    let va = VirtAddr::new_truncate(va_raw);
    let cpu = CpuState {
        wp: ctl & (1 << 12) != 0,
        nxe: ctl & (1 << 13) != 0,
        smep: ctl & (1 << 14) != 0,
        smap: ctl & (1 << 15) != 0,
        pke: ctl & (1 << 16) != 0,
        ac: ctl & (1 << 17) != 0,
        pkru: (ctl >> 32) as u32,
        user: ctl & (1 << 18) != 0,
        maxphyaddr: ((ctl >> 19) % 53) as u8,
    };
    let access =
        [Access::Read, Access::Write, Access::Fetch, Access::Read][((ctl >> 25) & 3) as usize];
    let before = lookup(mem.as_slice(), cr3, va);
    let _ = entry_at(mem.as_slice(), cr3, va);
    let walked = translate(&mut mem, cr3, va, access, &cpu);
    if let (Ok(Some(leaf)), Ok(t)) = (before, walked) {
        // A successful walk reached the same leaf the lookup found.
        assert_eq!(leaf.pa(va).as_u64(), t.pa.as_u64(), "va {va_raw:#x}");
    }
});
