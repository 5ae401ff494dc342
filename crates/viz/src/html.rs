//! The HTML report: one self-contained file (SVG, CSS and script inline,
//! nothing fetched) that steps through runs of scenario files.
//!
//! Every (file, era, step) is one frame: the operation and its result, each
//! expectation's verdict, the checker's violations, the rmap picture and
//! the page-table tree with raw entries and their decoding. The script only
//! shows frames: it moves the chosen one (or two, side by side, for two
//! eras) into view, and keeps the choice in the URL fragment
//! (`#file=seed-swapin&era=2.6.34-rc3&step=8`, `&vs=2.6.34` for a second
//! era), so that a step can be linked to.

use std::fmt::Write as _;

use scenario::EraRun;
use serde_json::json;

use crate::pgtable_svg::{level_name, pgtable_svg};
use crate::rmap_svg::{SvgOptions, rmap_svg};
use crate::snapshot::Snapshot;
use crate::svg::{STYLE, esc};

/// One era's run of a file and its snapshots.
pub struct EraPictures {
    /// The run (step log).
    pub run: EraRun,
    /// Snapshot `i`: after `i` operations.
    pub snapshots: Vec<Snapshot>,
}

/// One file's runs.
pub struct FilePictures {
    /// The file as given.
    pub file: String,
    /// Its runs, in era order.
    pub eras: Vec<EraPictures>,
}

/// Which two eras the side-by-side view starts with.
#[derive(Clone, Debug, Default)]
pub struct CompareEras {
    /// Left.
    pub left: Option<String>,
    /// Right.
    pub right: Option<String>,
}

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

/// A short, fragment-safe name for a file: its stem.
pub fn file_key(file: &str) -> String {
    let stem = std::path::Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or(file);
    stem.chars()
        .map(
            |c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' },
        )
        .collect()
}

/// The whole report.
pub fn report(files: &[FilePictures], compare: &CompareEras) -> String {
    let mut frames = String::new();
    let mut index = Vec::new();
    let mut keys_seen: Vec<String> = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        let mut key = file_key(&f.file);
        if keys_seen.contains(&key) {
            key = format!("{key}-{fi}");
        }
        keys_seen.push(key.clone());
        let mut eras = Vec::new();
        for (ei, e) in f.eras.iter().enumerate() {
            let ops: Vec<String> = e
                .run
                .steps
                .iter()
                .filter(|s| s.op_index.is_some())
                .map(|s| format!("L{} {}", s.pos.line, s.text))
                .collect();
            let steps = e.snapshots.len();
            let failed_steps: Vec<usize> = (0..steps).filter(|&s| step_failed(&e.run, s)).collect();
            eras.push(json!({
                "name": e.run.era,
                "steps": steps,
                "ops": ops,
                "passed": e.run.passed(),
                "failed": failed_steps,
                "stopped": e.run.stopped.as_ref().map(|f| format!("line {}: {}", f.line, f.message)),
            }));
            for s in 0..steps {
                frame(&mut frames, &f.file, fi, ei, s, e);
            }
        }
        index.push(json!({ "key": key, "file": f.file, "eras": eras }));
    }
    let data = json!({
        "files": index,
        "left": compare.left,
        "right": compare.right,
    });
    // `</` cannot appear inside the script element.
    let data = data.to_string().replace("</", "<\\/");
    let title = files.iter().map(|f| f.file.as_str()).collect::<Vec<_>>().join(", ");
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ptemu: {}</title>
<style>{CSS}</style>
{STYLE}
</head><body>
<header id="bar">
<div class="brand">ptemu</div>
<label>file <select id="file"></select></label>
<label>era <select id="era"></select></label>
<label class="vs"><input type="checkbox" id="cmp"> beside <select id="era2"></select></label>
<div class="nav">
<button id="first" title="first step (Home)">&#xAB; first</button>
<button id="prev" title="previous step (&#x2190; or k)">&#x25C0; prev</button>
<span id="pos">step 0</span>
<button id="next" title="next step (&#x2192; or j)">next &#x25B6;</button>
<button id="last" title="last step (End)">last &#xBB;</button>
<span class="keys">keys: &#x2190; &#x2192; Home End</span>
</div>
</header>
<nav id="timeline"></nav>
<main id="view"><section id="left" class="pane"></section><section id="right" class="pane"></section></main>
<div id="store" hidden>
{frames}</div>
<script id="ptemu-data" type="application/json">{data}</script>
<script>{JS}</script>
</body></html>
"#,
        esc(&title)
    );
    o
}

fn step_failed(run: &EraRun, step: usize) -> bool {
    let mut cur = 0usize;
    for r in &run.steps {
        if let Some(i) = r.op_index {
            cur = i;
        }
        if cur == step && r.failed {
            return true;
        }
    }
    false
}

fn frame(o: &mut String, file: &str, fi: usize, ei: usize, s: usize, e: &EraPictures) {
    let snap = &e.snapshots[s];
    let prev = s.checked_sub(1).and_then(|i| e.snapshots.get(i));
    let id = format!("f{fi}e{ei}s{s}");
    let _ = write!(
        o,
        r#"<article class="frame" id="{id}" data-era="{}" data-step="{s}">"#,
        esc(&e.run.era)
    );
    // The operation and what followed it.
    let mut op_rec = None;
    let mut expects = Vec::new();
    let mut cur = 0usize;
    for r in &e.run.steps {
        if let Some(i) = r.op_index {
            cur = i;
            if i == s {
                op_rec = Some(r);
            }
            continue;
        }
        if cur == s {
            expects.push(r);
        }
    }
    let _ = write!(o, r#"<div class="head"><span class="era">{}</span>"#, esc(&e.run.era));
    match op_rec {
        Some(r) => {
            let _ = write!(
                o,
                r#"<span class="stepno">step {s}</span><code class="op">{}:{} {}</code><span class="res{}">{}</span>"#,
                esc(file),
                r.pos.line,
                esc(&r.text),
                if r.failed {
                    " bad"
                } else if r.result.starts_with("oops") {
                    " oops"
                } else {
                    ""
                },
                esc(&r.result)
            );
        }
        None => {
            let _ = write!(
                o,
                r#"<span class="stepno">step 0</span><code class="op">{}: before the first operation</code>"#,
                esc(file)
            );
        }
    }
    o.push_str("</div>");
    if !expects.is_empty() || op_rec.is_some_and(|r| !r.new_violations.is_empty()) {
        o.push_str(r#"<ul class="checks">"#);
        if let Some(r) = op_rec {
            for v in &r.new_violations {
                let _ = write!(o, r#"<li class="viol"><b>new violation</b> {}</li>"#, esc(v));
            }
        }
        for x in &expects {
            let cls = if x.failed {
                "bad"
            } else if x.result.starts_with("skipped") {
                "skip"
            } else {
                "ok"
            };
            let mark = match cls {
                "bad" => "&#x2717;",
                "skip" => "&#x2013;",
                _ => "&#x2713;",
            };
            let _ = write!(
                o,
                r#"<li class="{cls}"><span class="mark">{mark}</span><code>L{} {}</code> <span class="r">{}</span></li>"#,
                x.pos.line,
                esc(&x.text),
                esc(&x.result)
            );
        }
        o.push_str("</ul>");
    }
    if s + 1 == e.snapshots.len() {
        if let Some(f) = &e.run.stopped {
            let _ = write!(
                o,
                r#"<p class="stopped">the run stopped here: line {}: {}</p>"#,
                f.line,
                esc(&f.message)
            );
        }
    }
    let opts = SvgOptions { title: None, id_prefix: format!("{id}-"), legend: false, style: false };
    o.push_str(r#"<div class="pic">"#);
    o.push_str(&rmap_svg(snap, prev, &opts));
    o.push_str("</div>");
    if !snap.violations.is_empty() {
        o.push_str(r#"<details class="viols" open><summary>checker: "#);
        let _ = write!(o, "{} violation(s)</summary><ul>", snap.violations.len());
        for v in &snap.violations {
            let _ = write!(o, "<li>{}</li>", esc(v));
        }
        o.push_str("</ul></details>");
    }
    let opts =
        SvgOptions { title: None, id_prefix: format!("{id}-t-"), legend: false, style: false };
    o.push_str(r#"<details class="tables" open><summary>page tables: the walk to every address the scenario names</summary><div class="pic">"#);
    o.push_str(&pgtable_svg(snap, prev, &opts));
    o.push_str("</div>");
    decode_table(o, snap);
    o.push_str("</details></article>\n");
}

fn decode_table(o: &mut String, snap: &Snapshot) {
    if snap.walks.is_empty() {
        return;
    }
    o.push_str(r#"<div class="scroll"><table class="decode"><thead><tr><th>process</th><th>address</th><th>level</th><th>table</th><th>index</th><th>raw</th><th>meaning</th><th>flags</th></tr></thead><tbody>"#);
    for w in &snap.walks {
        for (i, st) in w.steps.iter().enumerate() {
            let meaning = match (st.kind.as_str(), st.pfn) {
                ("present", Some(p)) if st.level > 1 => format!("present, table at frame {p:#x}"),
                ("present", Some(p)) => format!("present, page frame {p:#x}"),
                ("protnone", Some(p)) => format!("PROT_NONE, page frame {p:#x}"),
                ("swap", _) => st.detail.clone(),
                (k, _) => k.to_string(),
            };
            let _ = write!(
                o,
                r#"<tr class="k-{}"><td>{}</td><td>{}</td><td>{}</td><td>{:#x}</td><td>{}</td><td><code>{:#018x}</code></td><td>{}</td><td class="fl">{}</td></tr>"#,
                esc(&st.kind),
                if i == 0 { esc(&w.proc) } else { String::new() },
                if i == 0 { format!("{:#x}", w.addr) } else { String::new() },
                level_name(st.level),
                st.table,
                st.index,
                st.raw,
                esc(&meaning),
                esc(&st.flags.join(" "))
            );
        }
    }
    o.push_str("</tbody></table></div>");
}
