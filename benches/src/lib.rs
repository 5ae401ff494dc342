//! Shared set-up for ptemu's criterion benchmarks.
//!
//! The translate benchmarks compare several translators on identical
//! tables: [`build_translate_tables`] maps a fully populated 1 GiB range
//! (pages of one size) into any [`PhysMem`] with pgtable's mapper, and
//! [`random_addresses`] / [`sequential_addresses`] give the address streams
//! every contender walks. A further contender (the real CPU under KVM, say)
//! builds the same tables into its own memory with the same functions.
#![forbid(unsafe_code)]

use pgtable::{
    EntryFlags, FrameSource, MapError, PageSize, Pfn, PhysAddr, PhysMem, VirtAddr, map_range,
    new_root,
};

/// First virtual address of the benchmarked range (1 GiB, so the range is
/// exactly one PDPT entry).
pub const BENCH_VA: u64 = 0x4000_0000;
/// Length of the benchmarked range.
pub const BENCH_LEN: u64 = 1 << 30;
/// Leaf flags of the benchmark mappings: a user read-write page already
/// accessed and dirty, so a hardware walk changes nothing after its first
/// pass.
pub const BENCH_FLAGS: EntryFlags = EntryFlags::PRESENT
    .union(EntryFlags::WRITABLE)
    .union(EntryFlags::USER)
    .union(EntryFlags::ACCESSED)
    .union(EntryFlags::DIRTY);

/// Table frames the 4 KiB layout needs: PML4, PDPT, PD and 512 PTs.
pub const TABLE_FRAMES_4K: u64 = 3 + 512;

/// Builds tables mapping `[BENCH_VA, BENCH_VA + 1 GiB)` with pages of
/// `size` onto consecutive frames from `data_pfn` (which must be aligned to
/// `size`; the data frames are never touched, so they need not exist in
/// `mem`). Table frames come from `frames`. Returns the root (CR3).
pub fn build_translate_tables<M, F>(
    mem: &mut M,
    frames: &mut F,
    size: PageSize,
    data_pfn: Pfn,
) -> Result<PhysAddr, MapError>
where
    M: PhysMem + ?Sized,
    F: FrameSource + ?Sized,
{
    let root = new_root(mem, frames)?;
    let va = VirtAddr::new(BENCH_VA)?;
    let count = BENCH_LEN / size.bytes();
    map_range(mem, frames, root, va, data_pfn, count, size, BENCH_FLAGS)?;
    Ok(root)
}

/// `count` addresses spread uniformly over the 1 GiB range (each in a
/// random 4 KiB page, at a random 8-byte-aligned offset). The stream comes
/// from the KVM checker's SplitMix64, so every run and every contender,
/// the hardware included, sees the same addresses for a seed.
pub fn random_addresses(count: usize, seed: u64) -> Vec<VirtAddr> {
    let mut rng = kvm::check::Rng::new(seed);
    (0..count)
        .map(|_| VirtAddr::new_truncate(BENCH_VA + ((rng.next_u64() % BENCH_LEN) & !7)))
        .collect()
}

/// `count` addresses walking the range upward `stride` bytes apart,
/// wrapping at its end.
pub fn sequential_addresses(count: usize, stride: u64) -> Vec<VirtAddr> {
    (0..count as u64)
        .map(|i| VirtAddr::new_truncate(BENCH_VA + (i.wrapping_mul(stride) % BENCH_LEN)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgtable::{BumpFrames, FrameMem, lookup};

    #[test]
    fn tables_map_the_whole_range() {
        let mut mem = FrameMem::new(TABLE_FRAMES_4K as usize + 1);
        let mut frames = BumpFrames::new(Pfn(1), Pfn(TABLE_FRAMES_4K + 1));
        let root = build_translate_tables(&mut mem, &mut frames, PageSize::Size4K, Pfn(0x40000))
            .expect("tables fit");
        for va in random_addresses(1000, 1).into_iter().chain(sequential_addresses(1000, 4096)) {
            let leaf = lookup(&mem, root, va).expect("in memory").expect("mapped");
            assert_eq!(leaf.pa(va).as_u64(), va.as_u64() - BENCH_VA + 0x4000_0000);
        }
        assert!(
            lookup(&mem, root, VirtAddr::new_truncate(BENCH_VA + BENCH_LEN)).unwrap().is_none()
        );
    }
}
