//! The mm benchmarks' timed operations alone, for instruction counts and
//! profiles (set-up is outside `Machine::write`, `read` and `reclaim`, so
//! `valgrind --tool=callgrind --toggle-collect=...` or a perf report under
//! those symbols sees only the faults):
//!
//! `mm_profile write|cow|swap [PAGES]` (20000 pages by default); prints the
//! wall time per page of the measured part. For instance
//! `valgrind --tool=callgrind --toggle-collect='*Machine>::write'
//! target/release/examples/mm_profile write`.
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("write", String::as_str);
    let pages: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let mut m = Machine::new(
        MachineConfig::new(Era::V6_18)
            .memory((2 * pages + 8192) * 4096)
            .swap(vec![(pages + 16) * 4096]),
    )
    .expect("machine");
    m.populate_memory().expect("populate");
    let p = m.spawn().expect("spawn");
    m.mmap(p, V, pages * 4096, Prot::Rw).expect("mmap");
    let touch = |m: &mut Machine, pid, v| {
        for i in 0..pages {
            done(m.write(pid, V + i * 4096, v).expect("write"));
        }
    };
    let timed = match mode {
        "write" => {
            let t = std::time::Instant::now();
            touch(&mut m, p, 1);
            t.elapsed()
        }
        "cow" => {
            touch(&mut m, p, 1);
            let c = done(m.fork(p).expect("fork"));
            let t = std::time::Instant::now();
            touch(&mut m, c, 2);
            t.elapsed()
        }
        "swap" => {
            touch(&mut m, p, 1);
            let t = std::time::Instant::now();
            for i in 0..pages {
                let va = V + i * 4096;
                done(m.reclaim(p, va, 4096, false).expect("reclaim"));
                done(m.read(p, va).expect("swap in"));
            }
            t.elapsed()
        }
        other => panic!("unknown mode {other}"),
    };
    eprintln!("{mode}: {} ns per page", timed.as_nanos() / u128::from(pages));
}
