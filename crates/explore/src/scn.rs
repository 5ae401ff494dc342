//! A finding as a scenario file: header comment, setup, the operations,
//! and after each operation the expectations that pin what it did
//! (`expect invariant ...` for every kind the checker reports anew there,
//! `expect oops ...`). The text is parsed back and run by the scenario
//! runner under every era: the file states the eras where it passes, and
//! its header those where it fails.

use rmap::Era;
use scenario::ast::Op;

use crate::Target;
use crate::exec::Anomaly;
use crate::render::{op_text, result_text, size_text};
use crate::sequence::{Replayed, replay};

/// Where a written scenario passes and fails under `ptemu run`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Eras under which every expectation holds.
    pub passes: Vec<String>,
    /// Eras under which it fails.
    pub fails: Vec<String>,
}

/// The body (setup, operations and expectations) for `ops` under `target`,
/// limited to `eras` (the `era`/`eras` line).
pub fn body(target: &Target, ops: &[Op], eras: &[String]) -> Result<String, String> {
    let (_, per_step) = replay(target, ops)?;
    let mut s = String::new();
    match eras {
        [one] => s.push_str(&format!("era {one}\n")),
        many => s.push_str(&format!("eras {}\n", many.join(" "))),
    }
    s.push_str(&format!(
        "memory {}\nswap {}\n\n",
        size_text(target.memory),
        size_text(target.swap)
    ));
    let none = Replayed::default();
    for (op, st) in ops.iter().zip(per_step.iter().chain(std::iter::repeat(&none))) {
        s.push_str(&op_text(op));
        // A call that fails states its errno, so the run goes on unfailed.
        if let (Some(Err(e)), false) = (&st.sys, has_result(op)) {
            s.push_str(&result_text(&Err(*e)));
        }
        s.push('\n');
        for a in &st.anomalies {
            match a {
                Anomaly::Invariant(k) => s.push_str(&format!("expect invariant {}\n", k.as_str())),
                Anomaly::Oops(k) => s.push_str(&format!("expect oops {}\n", k.as_str())),
                Anomaly::EmulatorError => {
                    s.push_str("# the emulator stops here with an internal error (see header)\n")
                }
            }
        }
    }
    Ok(s)
}

/// Runs `text` under every era with the scenario runner.
pub fn verdict(text: &str) -> Result<Verdict, String> {
    let sc = scenario::parse_str("explore.scn", text).map_err(|e| e.to_string())?;
    let mut v = Verdict::default();
    for era in Era::ALL {
        let (run, _) = scenario::run_era(&sc, era.name(), None);
        if run.passed() {
            v.passes.push(era.name().to_string());
        } else {
            v.fails.push(era.name().to_string());
        }
    }
    Ok(v)
}

/// The finding's scenario and where it passes: the body is written for the
/// target's era, run under all, then written again for every era where it
/// passes (the target's own era first among them when it is one).
pub fn write(target: &Target, ops: &[Op], header: &str) -> Result<(String, Verdict), String> {
    let own = target.era.map_or_else(|| target.semantics_base(), |e| e.name().to_string());
    let first = body(target, ops, std::slice::from_ref(&own))?;
    let v = verdict(&first)?;
    let eras = if v.passes.is_empty() { vec![own] } else { v.passes.clone() };
    let text = format!("{header}{}", body(target, ops, &eras)?);
    Ok((text, v))
}

fn has_result(op: &Op) -> bool {
    matches!(
        op,
        Op::Mmap { result: Some(_), .. }
            | Op::Munmap { result: Some(_), .. }
            | Op::Mprotect { result: Some(_), .. }
            | Op::Madvise { result: Some(_), .. }
    )
}
