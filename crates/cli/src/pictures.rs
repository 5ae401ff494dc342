//! `ptemu run --html` and `ptemu dump --svg/--dot`: wiring only; the
//! pictures are drawn by `ptemu-viz` from mm's inspection API.

use std::path::Path;
use std::process::ExitCode;

use scenario::{EraRun, Scenario};
use viz::html::{CompareEras, EraPictures, FilePictures};

/// Runs every scenario under its eras (or `era`), capturing a snapshot per
/// step; returns the runs per file and the pictures' input.
pub fn run_with_snapshots(
    scenarios: &[Scenario],
    era: Option<&str>,
) -> (Vec<(String, Vec<EraRun>)>, Vec<FilePictures>) {
    let mut runs = Vec::new();
    let mut pics = Vec::new();
    for scn in scenarios {
        let eras: Vec<String> = match era {
            Some(e) => vec![e.to_string()],
            None => scn.setup.eras.iter().map(|e| e.value.clone()).collect(),
        };
        let mut file_runs = Vec::new();
        let mut file_pics = Vec::new();
        for e in &eras {
            let (run, snapshots) = viz::snapshots(scn, e);
            file_runs.push(run.clone());
            file_pics.push(EraPictures { run, snapshots });
        }
        runs.push((scn.file.clone(), file_runs));
        pics.push(FilePictures { file: scn.file.clone(), eras: file_pics });
    }
    (runs, pics)
}

/// Parses `--compare LEFT,RIGHT`.
pub fn compare_eras(spec: Option<&str>) -> Result<CompareEras, String> {
    let Some(spec) = spec else {
        return Ok(CompareEras {
            left: Some("2.6.34-rc3".to_string()),
            right: Some("2.6.34".to_string()),
        });
    };
    let mut it = spec.split(',');
    let (Some(l), Some(r), None) = (it.next(), it.next(), it.next()) else {
        return Err(format!("--compare {spec:?}: expected two eras, LEFT,RIGHT"));
    };
    for e in [l, r] {
        if !scenario::era::is_known_era(e) {
            return Err(format!(
                "--compare: unknown era {e:?} (known: {})",
                scenario::era::known_names()
            ));
        }
    }
    Ok(CompareEras { left: Some(l.to_string()), right: Some(r.to_string()) })
}

/// Writes the HTML report.
pub fn write_html(
    out: &Path,
    pics: &[FilePictures],
    compare: &CompareEras,
) -> Result<usize, String> {
    let html = viz::html::report(pics, compare);
    std::fs::write(out, &html).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(html.len())
}

/// Writes the SVG and/or DOT picture of the state after `step` operations.
pub fn write_step_pictures(
    scn: &Scenario,
    era: &str,
    step: usize,
    svg: Option<&Path>,
    dot: Option<&Path>,
) -> ExitCode {
    let (picture, graph) = match viz::step_pictures(scn, era, step) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: {e}", scn.file);
            return ExitCode::from(1);
        }
    };
    for (path, text) in [(svg, picture), (dot, graph)] {
        let Some(path) = path else { continue };
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("ptemu: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
