//! ptemu-pgtable with no std and no allocator: builds 4-level tables in a
//! buffer on the stack, maps a 4 KiB and a 2 MiB page, walks them with the
//! CPU's walk and the side-effect-free lookup, and round-trips a swap entry.
//! Exported to C as `ptemu_no_std_selftest`, which returns 0 on success and
//! the number of the first failed check otherwise.
#![no_std]

use core::panic::PanicInfo;
use ptemu_pgtable::{
    Access, CpuState, EntryFlags, EntryFormat, EntryKind, FrameSource, Level, MemError, PageSize,
    Pfn, PhysAddr, PhysMem, SwapPte, VirtAddr, decode, encode_swap, lookup, map, new_root,
    translate,
};

const FRAMES: usize = 8;

/// Table frames handed out upward from frame 1, no free list (no heap).
struct Frames {
    next: u64,
}

impl FrameSource for Frames {
    fn alloc_table_frame(&mut self) -> Result<Pfn, MemError> {
        if self.next as usize >= FRAMES {
            return Err(MemError::NoFrames);
        }
        self.next += 1;
        Ok(Pfn(self.next - 1))
    }
    fn free_table_frame(&mut self, _pfn: Pfn) {}
}

fn run() -> Result<u32, u32> {
    let mut buf = [0u8; FRAMES * 4096];
    let mem: &mut [u8] = &mut buf;
    let mut frames = Frames { next: 1 };
    let cr3 = new_root(mem, &mut frames).map_err(|_| 1u32)?;
    let rw = EntryFlags::PRESENT | EntryFlags::WRITABLE | EntryFlags::USER;
    let va4k = VirtAddr::new(0x7f00_0000_1000).map_err(|_| 2u32)?;
    map(mem, &mut frames, cr3, va4k, Pfn(0x1234), PageSize::Size4K, rw).map_err(|_| 3u32)?;
    let va2m = VirtAddr::new(0x4000_0000).map_err(|_| 4u32)?;
    map(mem, &mut frames, cr3, va2m, Pfn(0x200), PageSize::Size2M, rw).map_err(|_| 5u32)?;

    let cpu = CpuState::default();
    let t = translate(mem, cr3, VirtAddr::new_truncate(0x7f00_0000_1abc), Access::Write, &cpu)
        .map_err(|_| 6u32)?;
    if t.pa.as_u64() != 0x123_4abc || t.leaf_entry & 0x60 != 0x60 {
        return Err(7);
    }
    let l = lookup(mem, cr3, VirtAddr::new_truncate(0x4012_3456)).map_err(|_| 8u32)?.ok_or(8u32)?;
    if l.pa(VirtAddr::new_truncate(0x4012_3456)).as_u64() != 0x32_3456 {
        return Err(9);
    }
    // A user read of an unmapped page: #PF with error code U (0x4).
    let fault = translate(mem, cr3, VirtAddr::new_truncate(0x1000), Access::Read, &cpu);
    match fault.err().and_then(|f| f.page_fault()) {
        Some(pf) if pf.error_code.bits() == 0x4 => {}
        _ => return Err(10),
    }
    let swp = SwapPte { swap_type: 3, offset: 0x1234, ..SwapPte::default() };
    let raw = encode_swap(swp, EntryFormat::L1tf).map_err(|_| 11u32)?;
    match decode(raw, Level::Pt, EntryFormat::L1tf) {
        Ok(EntryKind::Swap(s)) if s == swp => {}
        _ => return Err(12),
    }
    // Memory errors are values, not panics.
    match mem.read_u64(PhysAddr::new_truncate((FRAMES * 4096) as u64)) {
        Err(MemError::OutOfRange { .. }) => {}
        _ => return Err(13),
    }
    Ok(0)
}

/// Runs the checks; 0 means every one passed.
// SAFETY: the symbol name is unique to this library; C calls it with no
// arguments and gets a plain integer back.
#[unsafe(no_mangle)]
pub extern "C" fn ptemu_no_std_selftest() -> u32 {
    match run() {
        Ok(v) | Err(v) => v,
    }
}

#[panic_handler]
fn panic(_: &PanicInfo<'_>) -> ! {
    loop {}
}
