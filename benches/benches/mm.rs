//! mm: Linux's fault, fork and reclaim paths in ptemu, next to the host
//! kernel doing the same work and to the memory floor, in the same run.
//!
//! Group `mm`, one operation per iteration on the 6.18 era (the host's own):
//!
//! - `floor_clear` / `floor_copy`: zeroing one cold frame of phys memory,
//!   and copying one cold frame to another, with the very calls the fault
//!   paths make (`zero_frame_exclusive`, `copy_frame_exclusive`), on frames
//!   in the order the allocator hands them out, in batches laid out like
//!   the fault benchmarks' (see [`REGION`]).
//! - `anon_write_fault`: a write to an untouched page; `cow_fault` a write
//!   to a page shared with a forked child; `swap_out_in` the reclaim of one
//!   page and the read that brings it back.
//! - `fork_populated_1g` / `munmap_populated_1g`: fork, and munmap, of a
//!   process with 262144 present 4 KiB pages (1 GiB): David Hildenbrand's
//!   fork and munmap measurements of order-0 memory.
//! - `page_fault1`: will-it-scale's page_fault1 loop, one process: mmap
//!   128 MiB, write every page, munmap; throughput in pages.
//!
//! Group `mm_curve`: write faults, COW faults and fork over 1 MiB to 1 GiB
//! of touched memory, throughput in pages, so that the cost per page can be
//! read off across sizes.
//!
//! Set-up and teardown (populating, forking for a COW batch, exiting) stay
//! outside the timed part. The `host` functions run benches/host/mmhost.c,
//! compiled here with `cc`: it does the same operations on the running
//! kernel and reports the time spent in them alone. `swap_out_in/host`
//! needs swap: when run as root with no swap active it creates, activates
//! and afterwards removes a 256 MiB swap file in the temporary directory;
//! otherwise it is skipped with a message.
//!
//! Clock: both sides time with the calling thread's CPU time
//! (CLOCK_THREAD_CPUTIME_ID, user and kernel time), so that on a shared
//! machine the time other processes hold the CPU is not counted; the
//! host's faults, fork and munmap run in the kernel on the calling
//! thread and are counted. `PTEMU_BENCH_CLOCK=wall` switches both sides
//! to CLOCK_MONOTONIC, for an otherwise idle machine.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mm::{Era, Machine, MachineConfig, Outcome, Pid, Prot};
use pgtable::Pfn;
use phys::{FrameAllocator, PageDescs, PhysMemory};

const V: u64 = 0x7f00_0000_0000;
/// Pages per batch of the single-fault benchmarks and of the floors: 512
/// MiB, more than this machine's caches (4 MiB of L2; the VM reports a
/// 480 MiB L3 shared with the rest of the host). A batch reuses the frames
/// of the one before it, so by the time a fault (or the floor) reaches a
/// frame, a whole batch of other memory has been touched since that frame
/// was: every frame is cold.
const REGION: u64 = 1 << 17;
/// Pages of the fork and munmap benchmarks' process: 1 GiB.
const GIB_PAGES: u64 = 262_144;
/// Pages of will-it-scale's page_fault1 mapping (MEMSIZE, 128 MiB).
const PF1_PAGES: u64 = 32_768;
/// Pages per batch of the swap round trip, on both sides: the host's swap
/// file is 256 MiB, and a batch's pages must all fit in it.
const SWAP_BATCH: u64 = 4096;
/// Spare frames for page tables and the zero page beside a batch.
const SLACK: u64 = (16 << 20) / 4096;

/// Whether `PTEMU_BENCH_CLOCK=wall` asked for wall-clock time.
fn wall_clock() -> bool {
    static WALL: OnceLock<bool> = OnceLock::new();
    *WALL.get_or_init(|| std::env::var("PTEMU_BENCH_CLOCK").is_ok_and(|v| v == "wall"))
}

/// A start time on the benchmarks' clock (see the crate documentation).
#[derive(Clone, Copy)]
enum Clock {
    Wall(Instant),
    Cpu(Duration),
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.unsigned_abs(), t.tv_nsec as u32)
}

impl Clock {
    fn now() -> Self {
        if wall_clock() { Clock::Wall(Instant::now()) } else { Clock::Cpu(thread_cpu()) }
    }

    fn elapsed(self) -> Duration {
        match self {
            Clock::Wall(t) => t.elapsed(),
            Clock::Cpu(t) => thread_cpu().saturating_sub(t),
        }
    }
}

fn done<T>(o: Outcome<T>) -> T {
    match o {
        Outcome::Done(v) => v,
        Outcome::Segv(s) => panic!("unexpected {s}"),
        Outcome::Oops(o) => panic!("unexpected {o}"),
    }
}

/// A 6.18 machine of `pages` frames, every frame touched once so that the
/// host's first-touch faults are not timed.
fn machine(pages: u64, swap: u64) -> Machine {
    let m = Machine::new(MachineConfig::new(Era::V6_18).memory(pages * 4096).swap(vec![swap]))
        .expect("machine");
    m.populate_memory().expect("populate");
    m
}

/// A process with `pages` pages mapped read-write at V, written if `touch`.
fn process(m: &mut Machine, pages: u64, touch: bool) -> Pid {
    let p = m.spawn().expect("spawn");
    m.mmap(p, V, pages * 4096, Prot::Rw)
        .expect("mmap")
        .done()
        .expect("mmap ran")
        .expect("mmap succeeded");
    if touch {
        for i in 0..pages {
            done(m.write(p, V + i * 4096, i as u8).expect("populate"));
        }
    }
    p
}

/// `iters` split into batches of at most `max`, all of nearly the same
/// size (so that no batch is much shorter than the one before it, whose
/// frames it reuses).
fn batch_sizes(iters: u64, max: u64) -> impl Iterator<Item = u64> {
    let k = iters.div_ceil(max).max(1);
    (0..k).map(move |j| iters / k + u64::from(j < iters % k)).filter(|&n| n > 0)
}

/// Runs `iters` timed operations in batches on one long-lived state `m`:
/// `setup(m, n)` prepares a batch (untimed), `op(m, &b, i)` is timed,
/// `teardown(m, b)` untimed.
fn batched<M, B>(
    m: &mut M,
    iters: u64,
    max: u64,
    mut setup: impl FnMut(&mut M, u64) -> B,
    mut op: impl FnMut(&mut M, &B, u64),
    mut teardown: impl FnMut(&mut M, B),
) -> Duration {
    let mut total = Duration::ZERO;
    for n in batch_sizes(iters, max) {
        let b = setup(m, n);
        let t = Clock::now();
        for i in 0..n {
            op(m, &b, i);
        }
        total += t.elapsed();
        teardown(m, b);
    }
    total
}

/// The floor's memory: a phys memory of the same size as the fault
/// benchmark's machine, touched once, and the frames its allocator hands
/// out, in that order (after the zero page, which a machine takes first).
struct Floor {
    mem: PhysMemory,
    frames: Vec<Pfn>,
}

impl Floor {
    fn new(pages: u64, take: u64) -> Self {
        let mut mem = PhysMemory::new(pages * 4096).expect("phys");
        let mut descs = PageDescs::try_new(mem.frames()).expect("descs");
        let mut alloc = FrameAllocator::try_new(&mut descs).expect("allocator");
        let _zero_page = alloc.alloc(0, &mut descs).expect("zero page");
        let frames: Vec<Pfn> =
            (0..take).map(|_| alloc.alloc(0, &mut descs).expect("frame")).collect();
        for f in 0..mem.frames() {
            mem.zero_frame_exclusive(Pfn(f)).expect("populate");
        }
        Floor { mem, frames }
    }
}

/// The host reference program, compiled once.
struct Host {
    bin: Option<PathBuf>,
}

impl Host {
    fn build() -> Self {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("host/mmhost.c");
        let bin = std::env::temp_dir().join(format!("ptemu-mmhost-{}", std::process::id()));
        let ok = Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("mm benches: cannot compile {}; host figures skipped", src.display());
        }
        Host { bin: ok.then_some(bin) }
    }

    /// Runs a mode and returns the time it reports, or None on failure.
    fn run(&self, mode: &str, pages: u64, iters: u64) -> Option<Duration> {
        let out = Command::new(self.bin.as_ref()?)
            .args([mode, &pages.to_string(), &iters.to_string()])
            .env("MMHOST_CLOCK", if wall_clock() { "wall" } else { "cpu" })
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("mmhost {mode}: {}", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        let s = String::from_utf8_lossy(&out.stdout);
        let ns: u64 = s.trim().strip_prefix("ns=")?.parse().ok()?;
        Some(Duration::from_nanos(ns))
    }

    /// `run` over batches of at most `max` iterations, `pages` per batch
    /// given by `pages_for(n)`.
    fn run_batched(
        &self,
        mode: &str,
        iters: u64,
        max: u64,
        pages_for: impl Fn(u64) -> u64,
    ) -> Duration {
        batch_sizes(iters, max).map(|n| self.run(mode, pages_for(n), n).expect("host run")).sum()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(b) = &self.bin {
            let _ = std::fs::remove_file(b);
        }
    }
}

/// A swap file this run activated, deactivated and removed on drop.
struct HostSwap {
    file: PathBuf,
}

impl HostSwap {
    fn setup() -> Option<HostSwap> {
        let swaps = std::fs::read_to_string("/proc/swaps").ok()?;
        if swaps.lines().count() > 1 {
            eprintln!("mm benches: swap already active; using it");
            return None;
        }
        let file = std::env::temp_dir().join(format!("ptemu-bench-swap-{}", std::process::id()));
        let sh = |cmd: &str, args: &[&str]| {
            Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success())
        };
        let f = file.to_string_lossy().to_string();
        let ok = sh("fallocate", &["-l", "256M", &f])
            && sh("chmod", &["600", &f])
            && sh("mkswap", &[&f])
            && sh("swapon", &[&f]);
        if !ok {
            let _ = std::fs::remove_file(&file);
            eprintln!(
                "mm benches: could not activate a swap file (not root?); swap_out_in/host skipped"
            );
            return None;
        }
        Some(HostSwap { file })
    }
}

impl Drop for HostSwap {
    fn drop(&mut self) {
        let _ = Command::new("swapoff").arg(&self.file).status();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Frames of the write-fault machine: a batch, its page tables, slack.
const WRITE_FRAMES: u64 = REGION + SLACK;
/// Frames of the COW machine: the parent's batch, the child's copies.
const COW_FRAMES: u64 = 2 * REGION + SLACK;

fn bench_single(c: &mut Criterion, host: &Host) {
    let mut g = c.benchmark_group("mm");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));

    // floor_clear, then the same clears each after prefetching the next
    // frame as the write fault does (do_anonymous_page): the floor for a
    // fault path that hides part of the memory latency that way.
    for (name, prefetch) in [("floor_clear", false), ("floor_clear_prefetched", true)] {
        let mut f = None;
        g.bench_function(name, |b| {
            let f = f.get_or_insert_with(|| Floor::new(WRITE_FRAMES, REGION));
            b.iter_custom(|iters| {
                batched(
                    &mut *f,
                    iters,
                    REGION,
                    |_, _| (),
                    |f, (), i| {
                        if prefetch {
                            if let Some(&next) = f.frames.get(i as usize + 1) {
                                f.mem.prefetch_frame(next).expect("prefetch");
                            }
                        }
                        let pfn = f.frames[i as usize];
                        f.mem.zero_frame_exclusive(pfn).expect("zero");
                    },
                    |_, ()| (),
                )
            })
        });
    }
    {
        let mut m = None;
        g.bench_function("anon_write_fault/ptemu", |b| {
            let m = m.get_or_insert_with(|| machine(WRITE_FRAMES, 1 << 20));
            b.iter_custom(|iters| {
                batched(
                    &mut *m,
                    iters,
                    REGION,
                    |m, n| process(m, n, false),
                    |m, &p, i| done(m.write(p, V + i * 4096, 1).expect("fault")),
                    |m, p| done(m.exit(p).expect("exit")),
                )
            })
        });
    }
    if host.bin.is_some() {
        g.bench_function("anon_write_fault/host", |b| {
            b.iter_custom(|iters| host.run_batched("anon_write_fault", iters, REGION, |_| 0))
        });
    }

    // floor_copy, then the same copies each after prefetching the next
    // destination frame as the COW fault does (wp_page_copy).
    for (name, prefetch) in [("floor_copy", false), ("floor_copy_prefetched", true)] {
        let mut f = None;
        g.bench_function(name, |b| {
            let f = f.get_or_insert_with(|| Floor::new(COW_FRAMES, 2 * REGION));
            b.iter_custom(|iters| {
                batched(
                    &mut *f,
                    iters,
                    REGION,
                    |f, n| {
                        // The parent's pages, written before the fork.
                        for &src in &f.frames[..n as usize] {
                            f.mem.zero_frame_exclusive(src).expect("zero");
                        }
                    },
                    |f, (), i| {
                        if prefetch {
                            if let Some(&next) = f.frames.get((REGION + i + 1) as usize) {
                                f.mem.prefetch_frame(next).expect("prefetch");
                            }
                        }
                        let (src, dst) = (f.frames[i as usize], f.frames[(REGION + i) as usize]);
                        f.mem.copy_frame_exclusive(dst, src).expect("copy");
                    },
                    |_, ()| (),
                )
            })
        });
    }
    {
        let mut m = None;
        g.bench_function("cow_fault/ptemu", |b| {
            let m = m.get_or_insert_with(|| machine(COW_FRAMES, 1 << 20));
            b.iter_custom(|iters| {
                batched(
                    &mut *m,
                    iters,
                    REGION,
                    |m, n| {
                        let p = process(m, n, true);
                        let child = done(m.fork(p).expect("fork"));
                        (p, child)
                    },
                    |m, &(_, c), i| done(m.write(c, V + i * 4096, 2).expect("cow")),
                    |m, (p, c)| {
                        done(m.exit(c).expect("exit"));
                        done(m.exit(p).expect("exit"));
                    },
                )
            })
        });
    }
    if host.bin.is_some() {
        g.bench_function("cow_fault/host", |b| {
            b.iter_custom(|iters| host.run_batched("cow_fault", iters, REGION, |n| n))
        });
    }

    {
        // One machine for every batch, as the fault benchmarks keep one and
        // as the host kernel keeps its RAM and swap device: each batch a
        // new process populates SWAP_BATCH pages at most (untimed), swaps
        // each out and reads it back (timed), and exits (untimed).
        let mut m = None;
        g.bench_function("swap_out_in/ptemu", |b| {
            let m = m.get_or_insert_with(|| {
                machine(SWAP_BATCH + 1024 + SLACK, (SWAP_BATCH + 16) * 4096)
            });
            // reclaim_into with one buffer, as a pager calling reclaim
            // over and over would: no allocation per page.
            let mut out = Vec::with_capacity(1);
            b.iter_custom(|iters| {
                batched(
                    &mut *m,
                    iters,
                    SWAP_BATCH,
                    |m, n| process(m, n, true),
                    |m, &p, i| {
                        let va = V + i * 4096;
                        out.clear();
                        done(m.reclaim_into(p, va, 4096, false, &mut out).expect("reclaim"));
                        done(m.read(p, va).expect("swap in"));
                    },
                    |m, p| done(m.exit(p).expect("exit")),
                )
            })
        });
    }
    if host.bin.is_some() {
        let swap = HostSwap::setup();
        let active = swap.is_some()
            || std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() > 1);
        if active && host.run("swap_out_in", 0, 1).is_some() {
            g.bench_function("swap_out_in/host", |b| {
                b.iter_custom(|iters| host.run_batched("swap_out_in", iters, SWAP_BATCH, |_| 0))
            });
        }
        drop(swap);
    }
    g.finish();
}

/// Hildenbrand's fork and munmap of 1 GiB, and will-it-scale's page_fault1.
fn bench_standard(c: &mut Criterion, host: &Host) {
    let mut g = c.benchmark_group("mm");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(10));
    {
        // One machine for both; the fork's 1 GiB parent exits before the
        // munmap benchmark maps its own 1 GiB.
        let mut st: Option<(Machine, Option<Pid>)> = None;
        g.bench_function("fork_populated_1g/ptemu", |b| {
            let (m, parent) =
                st.get_or_insert_with(|| (machine(GIB_PAGES + 2 * SLACK, 1 << 20), None));
            let p = *parent.get_or_insert_with(|| process(m, GIB_PAGES, true));
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Clock::now();
                    let child = done(m.fork(p).expect("fork"));
                    total += t.elapsed();
                    done(m.exit(child).expect("exit"));
                }
                total
            })
        });
        g.bench_function("munmap_populated_1g/ptemu", |b| {
            let (m, parent) =
                st.get_or_insert_with(|| (machine(GIB_PAGES + 2 * SLACK, 1 << 20), None));
            if let Some(p) = parent.take() {
                done(m.exit(p).expect("exit"));
            }
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let q = process(m, GIB_PAGES, true);
                    let t = Clock::now();
                    done(m.munmap(q, V, GIB_PAGES * 4096).expect("munmap")).expect("munmap errno");
                    total += t.elapsed();
                    done(m.exit(q).expect("exit"));
                }
                total
            })
        });
    }
    if host.bin.is_some() {
        g.bench_function("fork_populated_1g/host", |b| {
            b.iter_custom(|iters| host.run("fork", GIB_PAGES, iters).expect("host run"))
        });
        g.bench_function("munmap_populated_1g/host", |b| {
            b.iter_custom(|iters| host.run("munmap", GIB_PAGES, iters).expect("host run"))
        });
    }

    g.throughput(Throughput::Elements(PF1_PAGES));
    g.measurement_time(Duration::from_secs(4));
    {
        let mut st = None;
        g.bench_function("page_fault1/ptemu", |b| {
            let (m, p) = st.get_or_insert_with(|| {
                let mut m = machine(PF1_PAGES + SLACK, 1 << 20);
                let p = m.spawn().expect("spawn");
                (m, p)
            });
            let p = *p;
            b.iter_custom(|iters| {
                let t = Clock::now();
                for _ in 0..iters {
                    m.mmap(p, V, PF1_PAGES * 4096, Prot::Rw).expect("mmap");
                    for i in 0..PF1_PAGES {
                        done(m.write(p, V + i * 4096, 0).expect("fault"));
                    }
                    done(m.munmap(p, V, PF1_PAGES * 4096).expect("munmap")).expect("munmap errno");
                }
                t.elapsed()
            })
        });
    }
    if host.bin.is_some() {
        g.bench_function("page_fault1/host", |b| {
            b.iter_custom(|iters| host.run("page_fault1", PF1_PAGES, iters).expect("host run"))
        });
    }
    g.finish();
}

/// Touched memory of the cost curve, in MiB.
const CURVE_MIB: [u64; 6] = [1, 4, 16, 64, 256, 1024];

/// Write faults, COW faults and fork over 1 MiB to 1 GiB.
fn bench_curve(c: &mut Criterion) {
    let mut g = c.benchmark_group("mm_curve");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    // Room for a 1 GiB parent, its child's 1 GiB of copies and both
    // processes' page tables.
    let mut cm: Option<Machine> = None;
    let new_machine = || machine(2 * GIB_PAGES + 2 * SLACK, 1 << 20);
    for mib in CURVE_MIB {
        // The parent of the COW and fork runs, made when one of them runs.
        let mut parent: Option<Pid> = None;
        let pages = mib << 8;
        g.throughput(Throughput::Elements(pages));
        let id = |f: &str| BenchmarkId::new(f, format!("{mib}MiB"));
        g.bench_function(id("write_fault"), |b| {
            let m = cm.get_or_insert_with(new_machine);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let p = process(m, pages, false);
                    let t = Clock::now();
                    for i in 0..pages {
                        done(m.write(p, V + i * 4096, 1).expect("fault"));
                    }
                    total += t.elapsed();
                    done(m.exit(p).expect("exit"));
                }
                total
            })
        });
        g.bench_function(id("cow_fault"), |b| {
            let m = cm.get_or_insert_with(new_machine);
            let parent = *parent.get_or_insert_with(|| process(m, pages, true));
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let child = done(m.fork(parent).expect("fork"));
                    let t = Clock::now();
                    for i in 0..pages {
                        done(m.write(child, V + i * 4096, 2).expect("cow"));
                    }
                    total += t.elapsed();
                    done(m.exit(child).expect("exit"));
                }
                total
            })
        });
        g.bench_function(id("fork"), |b| {
            let m = cm.get_or_insert_with(new_machine);
            let parent = *parent.get_or_insert_with(|| process(m, pages, true));
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Clock::now();
                    let child = done(m.fork(parent).expect("fork"));
                    total += t.elapsed();
                    done(m.exit(child).expect("exit"));
                }
                total
            })
        });
        if let (Some(m), Some(p)) = (cm.as_mut(), parent) {
            done(m.exit(p).expect("exit"));
        }
    }
    g.finish();
}

fn bench_mm(c: &mut Criterion) {
    let host = Host::build();
    bench_single(c, &host);
    bench_standard(c, &host);
    bench_curve(c);
}

criterion_group!(benches, bench_mm);
criterion_main!(benches);
