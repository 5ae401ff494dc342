//! The mm benchmarks' timed operations alone, for instruction counts and
//! profiles (set-up is outside `Machine::write`, `read` and `reclaim`, so
//! `valgrind --tool=callgrind --toggle-collect=...` or a perf report under
//! those symbols sees only the faults):
//!
//! `mm_profile write|cow|swap [PAGES [ROUNDS]]` (20000 pages, one round by
//! default; each round a new process); prints the
//! thread CPU time per page of the measured part (and with
//! `MM_PROFILE_PARTS=k`, in swap mode, that of each k-th of every round
//! first, on one line per round). For instance
//! `MM_PROFILE_CLOCK=wall valgrind --tool=callgrind
//! --toggle-collect='*Machine>::write' target/release/examples/mm_profile write`
//! (the swap mode's reclaim is `reclaim_into`, so its toggle is
//! `--toggle-collect='*Machine>::reclaim_into'`).
#![allow(missing_docs)]

use mm::{Era, Machine, MachineConfig, Outcome, Prot};

const V: u64 = 0x7f00_0000_0000;

fn done<T>(o: Outcome<T>) -> T {
    match o {
        Outcome::Done(v) => v,
        Outcome::Segv(s) => panic!("unexpected {s}"),
        Outcome::Oops(o) => panic!("unexpected {o}"),
    }
}

/// The thread's CPU time (user and kernel), which other processes on a
/// shared machine do not inflate; wall time since the first call when
/// `MM_PROFILE_CLOCK=wall` (needed under valgrind, where rustix's vDSO
/// lookup for clock_gettime does not run).
fn cpu() -> std::time::Duration {
    static START: std::sync::OnceLock<Option<std::time::Instant>> = std::sync::OnceLock::new();
    let wall = START.get_or_init(|| {
        (std::env::var("MM_PROFILE_CLOCK").as_deref() == Ok("wall")).then(std::time::Instant::now)
    });
    if let Some(s) = wall {
        return s.elapsed();
    }
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(t.tv_sec.unsigned_abs(), t.tv_nsec as u32)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("write", String::as_str);
    // At least one page and one round (the figure is per page).
    let pages: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000).max(1);
    let rounds: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let mut m = Machine::new(
        MachineConfig::new(Era::V6_18)
            .memory((2 * pages + 8192) * 4096)
            .swap(vec![(pages + 16) * 4096]),
    )
    .expect("machine");
    m.populate_memory().expect("populate");
    let off: u64 = std::env::var("OFF").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let touch = |m: &mut Machine, pid, v| {
        for i in 0..pages {
            done(m.write(pid, V + i * 4096 + off, v).expect("write"));
        }
    };
    // MM_PROFILE_PARTS=k: the swap mode also prints the time per page of
    // each k-th part of every round (which part of a round costs what).
    let parts: u64 =
        std::env::var("MM_PROFILE_PARTS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let part = if parts > 0 { pages.div_ceil(parts) } else { 0 };
    let mut timed = std::time::Duration::ZERO;
    for _ in 0..rounds {
        let p = m.spawn().expect("spawn");
        m.mmap(p, V, pages * 4096, Prot::Rw).expect("mmap");
        timed += match mode {
            "write" => {
                let t = cpu();
                touch(&mut m, p, 1);
                cpu() - t
            }
            "cow" => {
                touch(&mut m, p, 1);
                let c = done(m.fork(p).expect("fork"));
                let t = cpu();
                touch(&mut m, c, 2);
                let d = cpu() - t;
                done(m.exit(c).expect("exit"));
                d
            }
            "swap" => {
                touch(&mut m, p, 1);
                let mut out = Vec::with_capacity(1);
                let t = cpu();
                let mut part_start = t;
                for i in 0..pages {
                    if part > 0 && i > 0 && i % part == 0 {
                        let now = cpu();
                        eprint!("{} ", (now - part_start).as_nanos() / u128::from(part));
                        part_start = now;
                    }
                    let va = V + i * 4096;
                    out.clear();
                    done(m.reclaim_into(p, va, 4096, false, &mut out).expect("reclaim"));
                    done(m.read(p, va).expect("swap in"));
                }
                let end = cpu();
                if let Some(full) = (pages - 1).checked_div(part) {
                    let last = pages - full * part;
                    eprintln!("{}", (end - part_start).as_nanos() / u128::from(last));
                }
                end - t
            }
            other => panic!("unknown mode {other}"),
        };
        done(m.exit(p).expect("exit"));
    }
    eprintln!("{mode}: {} ns per page", timed.as_nanos() / u128::from(pages * u64::from(rounds)));
}
