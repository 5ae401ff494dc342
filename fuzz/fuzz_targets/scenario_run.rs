//! The scenario runner on whatever the parser accepts: running it under its
//! eras must never panic, whatever the operations ask. The machine is kept
//! small (the parser's limits allow 256 MiB; the runner's work per step
//! grows with it) so the fuzzer spends its time on operations.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Inputs asking for more than this are passed over (not a finding).
const MAX_MEMORY: u64 = 4 << 20;
const MAX_SWAP_TOTAL: u64 = 4 << 20;
const MAX_STEPS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(sc) = scenario::parse_bytes("fuzz.scn", data) else { return };
    if sc.setup.memory.value > MAX_MEMORY
        || sc.setup.swaps.iter().map(|s| s.value).sum::<u64>() > MAX_SWAP_TOTAL
        || sc.steps.len() > MAX_STEPS
    {
        return;
    }
    for run in scenario::run_scenario(&sc, None) {
        // The report of any run must render.
        let _ = scenario::render_run("fuzz.scn", &run);
    }
});
