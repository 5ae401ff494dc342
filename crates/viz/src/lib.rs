//! Pictures of ptemu's state, drawn from `mm`'s read-only inspection API.
//!
//! A [`Snapshot`] is what `ptemu dump` reads of a machine between two
//! operations of a scenario: processes and their VMAs, the
//! anon_vma_chains, the anon_vmas with their root and parent links, each
//! anon page with its `page->mapping`, the swap slots with their counts
//! and the swap cache, the checker's violations, and the hardware walk
//! from CR3 to every PTE the scenario names. Nothing here changes the
//! machine or keeps state of its own: pictures are views.
//!
//! From a snapshot this crate draws
//! - the rmap picture as SVG ([`rmap_svg`]), laid out here in Rust by a
//!   small layered layout of its own (fixed columns, order-preserving
//!   placement, orthogonal lanes for the long `page->mapping` arrows);
//! - the page-table tree as SVG ([`pgtable_svg`]);
//! - both as Graphviz DOT ([`dot`]);
//! - a self-contained HTML report stepping through whole runs, one era or
//!   two side by side ([`html::report`]).
//!
//! Output is deterministic: the same scenario gives the same bytes.
#![forbid(unsafe_code)]

pub mod dot;
pub mod html;
pub mod pgtable_svg;
pub mod rmap_svg;
pub mod snapshot;
mod svg;

pub use dot::dot;
pub use pgtable_svg::pgtable_svg;
pub use rmap_svg::rmap_svg;
pub use snapshot::{Snapshot, capture};

/// Runs `scenario` under `era` and captures a snapshot before the first
/// operation and after every operation that completes; returns the run and
/// the snapshots, index `i` being the state after `i` operations.
pub fn snapshots(scenario: &scenario::Scenario, era: &str) -> (scenario::EraRun, Vec<Snapshot>) {
    let mut snaps = Vec::new();
    let (run, _) = scenario::run_era_observed(scenario, era, None, &mut |obs| {
        snaps.push(capture(obs));
    });
    (run, snaps)
}

/// The snapshots after `step - 1` and `step` operations (0: the empty
/// machine, with no previous) under `era`, with the run as far as it went;
/// `None` for a step the run did not reach.
pub fn snapshot_at(
    scenario: &scenario::Scenario,
    era: &str,
    step: usize,
) -> (scenario::EraRun, Option<Snapshot>, Option<Snapshot>) {
    let mut prev = None;
    let mut snap = None;
    let (run, _) = scenario::run_era_observed(scenario, era, Some(step), &mut |obs| {
        if obs.op_index + 1 == step {
            prev = Some(capture(obs));
        }
        if obs.op_index == step {
            snap = Some(capture(obs));
        }
    });
    (run, prev, snap)
}

/// The pictures `ptemu dump --step N --svg/--dot` writes: the rmap picture
/// as a standalone SVG (title, legend and stylesheet inside; what changed
/// since step N-1 haloed) and the DOT graph, for the state after `step`
/// operations under `era`. Errors say why there is no such state.
pub fn step_pictures(
    scenario: &scenario::Scenario,
    era: &str,
    step: usize,
) -> Result<(String, String), String> {
    let (run, prev, snap) = snapshot_at(scenario, era, step);
    let Some(snap) = snap else {
        let why =
            run.stopped.map_or_else(String::new, |f| format!(": line {}: {}", f.line, f.message));
        return Err(format!("[{era}] the run did not reach operation {step}{why}"));
    };
    let op = run.steps.iter().find(|s| s.op_index == Some(step)).map_or_else(
        || "before the first operation".to_string(),
        |s| format!("after line {}: {}", s.pos.line, s.text),
    );
    let title = format!("{} [era {era}] step {step}: {op}", scenario.file);
    let opts = rmap_svg::SvgOptions {
        title: Some(title.clone()),
        id_prefix: String::new(),
        legend: true,
        style: true,
    };
    Ok((rmap_svg(&snap, prev.as_ref(), &opts), dot(&snap, &title)))
}
