//! mm: Linux's fault, fork and reclaim paths in ptemu, next to the host
//! kernel doing the same work in the same run.
//!
//! Each ptemu function times one operation per iteration on the 6.18 era
//! (the host's own): `anon_write_fault` a write to an untouched page,
//! `cow_fault` a write to a page shared with a forked child,
//! `fork_populated_1g` a fork of a process with 262144 present pages, and
//! `swap_out_in` the reclaim of one page and the read that brings it back.
//! Set-up and teardown (populating, exiting) stay outside the timed part.
//!
//! The `host` functions run benches/host/mmhost.c, compiled here with `cc`:
//! it does the same operations on the running kernel and reports the time
//! spent in them alone. `swap_out_in/host` needs swap: when run as root with
//! no swap active it creates, activates and afterwards removes a 256 MiB
//! swap file in the temporary directory; otherwise it is skipped with a
//! message.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mm::{Era, Machine, MachineConfig, Outcome, Pid, Prot};

const V: u64 = 0x7f00_0000_0000;
/// Pages per fresh address space in the fault benchmarks.
const BATCH: u64 = 1 << 15;
/// Pages of the fork benchmark's process: 1 GiB.
const FORK_PAGES: u64 = 262_144;

fn done<T>(o: Outcome<T>) -> T {
    match o {
        Outcome::Done(v) => v,
        Outcome::Segv(s) => panic!("unexpected {s}"),
        Outcome::Oops(o) => panic!("unexpected {o}"),
    }
}

fn machine(memory: u64, swap: u64) -> Machine {
    let m = Machine::new(MachineConfig::new(Era::V6_18).memory(memory).swap(vec![swap]))
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

/// Runs `iters` timed operations in batches of fresh state: `setup` makes
/// a batch's state (untimed), `op(state, i)` is timed, `teardown` untimed.
fn batched<S>(
    iters: u64,
    batch: u64,
    mut setup: impl FnMut(u64) -> S,
    mut op: impl FnMut(&mut S, u64),
    mut teardown: impl FnMut(S),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(batch);
        let mut s = setup(n);
        let t = Instant::now();
        for i in 0..n {
            op(&mut s, i);
        }
        total += t.elapsed();
        teardown(s);
        left -= n;
    }
    total
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

fn bench_mm(c: &mut Criterion) {
    let host = Host::build();
    let mut g = c.benchmark_group("mm");
    g.sample_size(20);

    g.bench_function("anon_write_fault/ptemu", |b| {
        b.iter_custom(|iters| {
            batched(
                iters,
                BATCH,
                |n| {
                    let mut m = machine((n + 1024) * 4096 + (16 << 20), 1 << 20);
                    let p = process(&mut m, n, false);
                    (m, p)
                },
                |(m, p), i| done(m.write(*p, V + i * 4096, 1).expect("fault")),
                drop,
            )
        })
    });
    if host.bin.is_some() {
        g.bench_function("anon_write_fault/host", |b| {
            b.iter_custom(|iters| host.run("anon_write_fault", 0, iters).expect("host run"))
        });
    }

    g.bench_function("cow_fault/ptemu", |b| {
        b.iter_custom(|iters| {
            batched(
                iters,
                BATCH,
                |n| {
                    let mut m = machine((2 * n + 1024) * 4096 + (16 << 20), 1 << 20);
                    let p = process(&mut m, n, true);
                    let child = done(m.fork(p).expect("fork"));
                    (m, child)
                },
                |(m, c), i| done(m.write(*c, V + i * 4096, 2).expect("cow")),
                drop,
            )
        })
    });
    if host.bin.is_some() {
        g.bench_function("cow_fault/host", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BATCH);
                    total += host.run("cow_fault", n, n).expect("host run");
                    left -= n;
                }
                total
            })
        });
    }

    g.bench_function("swap_out_in/ptemu", |b| {
        b.iter_custom(|iters| {
            batched(
                iters,
                4096,
                |n| {
                    let mut m = machine((n + 1024) * 4096 + (16 << 20), (n + 16) * 4096);
                    let p = process(&mut m, n, true);
                    (m, p)
                },
                |(m, p), i| {
                    let va = V + i * 4096;
                    done(m.reclaim(*p, va, 4096, false).expect("reclaim"));
                    done(m.read(*p, va).expect("swap in"));
                },
                drop,
            )
        })
    });
    if host.bin.is_some() {
        let swap = HostSwap::setup();
        let active = swap.is_some()
            || std::fs::read_to_string("/proc/swaps").is_ok_and(|s| s.lines().count() > 1);
        if active && host.run("swap_out_in", 0, 1).is_some() {
            g.bench_function("swap_out_in/host", |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(4096);
                        total += host.run("swap_out_in", 0, n).expect("host run");
                        left -= n;
                    }
                    total
                })
            });
        }
        drop(swap);
    }
    g.finish();

    let mut g = c.benchmark_group("mm");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    {
        let mut m = machine((FORK_PAGES + 8192) * 4096 + (64 << 20), 1 << 20);
        let p = process(&mut m, FORK_PAGES, true);
        g.bench_function("fork_populated_1g/ptemu", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let child = done(m.fork(p).expect("fork"));
                    total += t.elapsed();
                    done(m.exit(child).expect("exit"));
                }
                total
            })
        });
    }
    if host.bin.is_some() {
        g.bench_function("fork_populated_1g/host", |b| {
            b.iter_custom(|iters| host.run("fork", FORK_PAGES, iters).expect("host run"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_mm);
criterion_main!(benches);
