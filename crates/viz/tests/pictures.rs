//! The pictures over every fixture: every era and step draws, the report
//! is self-contained and deterministic, the seed's key states are drawn as
//! what they are, and the picture committed in docs/ is the tool's output.

use std::path::{Path, PathBuf};

use ptemu_viz as viz;
use viz::html::{CompareEras, EraPictures, FilePictures};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> scenario::Scenario {
    let mut s = scenario::parse_file(&root().join("fixtures").join(name)).expect("fixture parses");
    s.file = format!("fixtures/{name}");
    s
}

/// Every fixture, subdirectories included, in path order.
fn fixtures() -> Vec<scenario::Scenario> {
    let base = root().join("fixtures");
    let mut names: Vec<String> = Vec::new();
    let mut dirs = vec![base.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("fixtures dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "scn") {
                let rel = p.strip_prefix(&base).expect("under fixtures/");
                names.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    assert!(names.len() >= 10, "fixtures found: {names:?}");
    names.iter().map(|n| fixture(n)).collect()
}

fn pictures(s: &scenario::Scenario) -> FilePictures {
    let eras = s
        .setup
        .eras
        .iter()
        .map(|e| {
            let (run, snapshots) = viz::snapshots(s, &e.value);
            EraPictures { run, snapshots }
        })
        .collect();
    FilePictures { file: s.file.clone(), eras }
}

/// Tags open and close in order (a cheap well-formedness check that
/// catches a forgotten `</g>` or an unescaped `<`).
fn balanced(xml: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
            if open != name {
                return Err(format!("<{open}> closed by </{name}>"));
            }
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            if name == "style" || name == "script" {
                // CSS and script have no tags; skip to their end.
                let end_tag = format!("</{name}>");
                let close = rest.find(&end_tag).ok_or(format!("unterminated <{name}>"))?;
                rest = &rest[close + end_tag.len()..];
                continue;
            }
            if !matches!(name.as_str(), "meta" | "input" | "br" | "hr" | "img" | "link") {
                stack.push(name);
            }
        }
    }
    if stack.is_empty() { Ok(()) } else { Err(format!("unclosed {stack:?}")) }
}

#[test]
fn every_fixture_era_and_step_draws() {
    for s in fixtures() {
        let p = pictures(&s);
        for e in &p.eras {
            assert!(!e.snapshots.is_empty(), "{} [{}]: no snapshot", s.file, e.run.era);
            let ops = e.run.steps.iter().filter(|r| r.op_index.is_some()).count();
            assert_eq!(e.snapshots.len(), ops + 1, "{} [{}]", s.file, e.run.era);
            for (i, snap) in e.snapshots.iter().enumerate() {
                let prev = i.checked_sub(1).map(|j| &e.snapshots[j]);
                let opts =
                    viz::rmap_svg::SvgOptions { legend: true, style: true, ..Default::default() };
                let svg = viz::rmap_svg(snap, prev, &opts);
                balanced(&svg).unwrap_or_else(|m| {
                    panic!("{} [{}] step {i}: rmap svg: {m}", s.file, e.run.era)
                });
                let t = viz::pgtable_svg(snap, prev, &opts);
                balanced(&t).unwrap_or_else(|m| {
                    panic!("{} [{}] step {i}: tables svg: {m}", s.file, e.run.era)
                });
                // Every page and anon_vma in the snapshot is a node.
                for pg in &snap.pages {
                    assert!(svg.contains(&format!("data-key=\"page:{:#x}\"", pg.pfn)));
                }
                for av in &snap.anon_vmas {
                    assert!(svg.contains(&format!("data-key=\"av:{}\"", av.id)));
                }
                let d = viz::dot(snap, "t");
                assert_eq!(d.matches('{').count(), d.matches('}').count(), "{} dot braces", s.file);
            }
        }
    }
}

#[test]
fn report_is_self_contained_and_deterministic() {
    let all: Vec<FilePictures> = fixtures().iter().map(pictures).collect();
    let html = viz::html::report(&all, &CompareEras::default());
    let again: Vec<FilePictures> = fixtures().iter().map(pictures).collect();
    assert!(html == viz::html::report(&again, &CompareEras::default()), "same input, same bytes");
    balanced(&html).expect("well-formed");
    for bad in ["<link", " src=", "@import", "url(http", "fetch(", "XMLHttpRequest", "https://"] {
        assert!(!html.contains(bad), "the report refers outside itself: {bad}");
    }
    // The only http:// is the SVG namespace name.
    assert_eq!(
        html.matches("http://").count(),
        html.matches("http://www.w3.org/2000/svg").count(),
        "an http:// reference other than the SVG namespace"
    );
    // One frame per (file, era, step).
    let frames: usize = all.iter().flat_map(|f| &f.eras).map(|e| e.snapshots.len()).sum();
    assert_eq!(html.matches("<article class=\"frame\"").count(), frames);
}

/// The seed under 2.6.34-rc3, as the pictures must show it.
#[test]
fn seed_states_are_drawn_as_what_they_are() {
    let s = fixture("seed-swapin.scn");
    let (_, snaps) = viz::snapshots(&s, "2.6.34-rc3");
    let opts = viz::rmap_svg::SvgOptions::default();
    let svg = |i: usize| viz::rmap_svg(&snaps[i], Some(&snaps[i - 1]), &opts);
    // Step 6, B's swap-in: the mapping moves to B's anon_vma, all live.
    let s6 = svg(6);
    assert!(s6.contains(r#"data-to="av:av2" data-rel="mapping" data-state="live""#), "{s6}");
    assert!(!s6.contains("data-state=\"unreachable\""));
    // Step 7, A's swap-in: A's PTE cannot be reached from av2.
    let s7 = svg(7);
    assert!(s7.contains(r#"data-key="pte:A:0x7f0000000000" data-state="unreachable""#), "{s7}");
    // Step 8, B's exit: av2 is freed and the mapping still names it.
    let s8 = svg(8);
    assert!(s8.contains(r#"data-to="av:av2" data-rel="mapping" data-state="freed""#), "{s8}");
    assert!(s8.contains(r#"data-key="av:av2" data-state="freed""#), "{s8}");
    assert!(s8.contains("gone since the previous step: "), "{s8}");
    assert!(s8.contains("process B"), "{s8}");
    // What changed is haloed: av2 (now freed) at step 8, nothing at step 0.
    assert!(s8.contains("class=\"chg\""));
    assert!(!viz::rmap_svg(&snaps[0], None, &opts).contains("class=\"chg\""));
    // Step 13, C's first write after a grace period: the slot is reused.
    let s13 = svg(13);
    assert!(s13.contains(r#"data-rel="mapping" data-state="reused""#), "{s13}");
    assert!(s13.contains("slot reused by"), "{s13}");
    // Under 2.6.34 the same step keeps the mapping on A's anon_vma.
    let (_, fixed) = viz::snapshots(&s, "2.6.34");
    let f8 = viz::rmap_svg(&fixed[8], Some(&fixed[7]), &opts);
    assert!(f8.contains(r#"data-to="av:av1" data-rel="mapping" data-state="live""#), "{f8}");
    assert!(!f8.contains("data-state=\"freed\""));
}

/// The picture in the README is the tool's output for the seed's key step.
/// Regenerate it with:
/// `cargo run -p ptemu -- dump fixtures/seed-swapin.scn --era 2.6.34-rc3 --step 8 --svg docs/seed-swapin-2.6.34-rc3-step8.svg`
#[test]
fn committed_readme_picture_is_current() {
    let s = fixture("seed-swapin.scn");
    let (svg, _) = viz::step_pictures(&s, "2.6.34-rc3", 8).expect("step 8");
    let path = root().join("docs/seed-swapin-2.6.34-rc3-step8.svg");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == svg,
        "{} is out of date; regenerate it with\n  cargo run -p ptemu -- dump fixtures/seed-swapin.scn --era 2.6.34-rc3 --step 8 --svg docs/seed-swapin-2.6.34-rc3-step8.svg",
        path.display()
    );
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    assert!(
        readme.contains("docs/seed-swapin-2.6.34-rc3-step8.svg"),
        "the README shows the picture"
    );
}

/// The DOT output is what Graphviz reads: every step of the seed under
/// every era, and a step of every fixture, through `dot -Tsvg`. Without
/// Graphviz the test says it skipped; with PTEMU_REQUIRE_GRAPHVIZ=1 (as
/// .ci/run sets) a missing `dot` fails it.
#[test]
fn dot_output_is_accepted_by_graphviz() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let have_dot =
        Command::new("dot").arg("-V").stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !have_dot {
        assert!(
            std::env::var_os("PTEMU_REQUIRE_GRAPHVIZ").is_none(),
            "PTEMU_REQUIRE_GRAPHVIZ is set but Graphviz's dot was not found"
        );
        // Straight to stderr: the test harness captures print! and eprint!.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: dot_output_is_accepted_by_graphviz: Graphviz's dot not found"
        );
        return;
    }
    let mut graphs = Vec::new();
    let seed = fixture("seed-swapin.scn");
    for e in &seed.setup.eras {
        let (_, snaps) = viz::snapshots(&seed, &e.value);
        for (i, s) in snaps.iter().enumerate() {
            graphs.push((format!("seed [{}] step {i}", e.value), viz::dot(s, "seed")));
        }
    }
    for s in fixtures() {
        let era = &s.setup.eras[0].value;
        let (_, snaps) = viz::snapshots(&s, era);
        let mid = snaps.len() / 2;
        graphs.push((format!("{} [{era}] step {mid}", s.file), viz::dot(&snaps[mid], &s.file)));
    }
    for (what, g) in graphs {
        let mut child = Command::new("dot")
            .arg("-Tsvg")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dot");
        child.stdin.take().expect("stdin").write_all(g.as_bytes()).expect("write to dot");
        let out = child.wait_with_output().expect("dot output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.trim().is_empty(), "{what}: dot says {err}\n{g}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"), "{what}");
    }
}
