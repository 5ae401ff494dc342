//! Every fixture under fixtures/ (subdirectories included), under each of
//! its eras, as its own named test (`<file> [<era>]`), so a failure names
//! the file, the era and the line.

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut paths = Vec::new();
    if let Err(e) = collect(&dir, &mut paths) {
        eprintln!("cannot read {}: {e}", dir.display());
        std::process::exit(2);
    }
    paths.sort();
    let mut trials = Vec::new();
    for path in paths {
        // Named by the path under fixtures/ (`random/random-01.scn`).
        let name = path
            .strip_prefix(&dir)
            .map_or_else(|_| path.display().to_string(), |p| p.display().to_string());
        match ptemu_scenario::parse_file(&path) {
            Ok(scn) => {
                for era in &scn.setup.eras {
                    let scn = scn.clone();
                    let era = era.value.clone();
                    let file = display(&path);
                    trials.push(Trial::test(format!("{name} [{era}]"), move || {
                        let (run, _) = ptemu_scenario::run_era(&scn, &era, None);
                        if run.passed() {
                            Ok(())
                        } else {
                            let log = ptemu_scenario::render_run(&file, &run);
                            let lines = ptemu_scenario::failure_lines(&file, &run).join("\n");
                            Err(Failed::from(format!("{lines}\n\n{log}")))
                        }
                    }));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                trials.push(Trial::test(format!("{name} [parse]"), move || Err(Failed::from(msg))));
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Every `.scn` file under `dir`, subdirectories included (fixtures/random
/// holds the generated ones).
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "scn") {
            out.push(path);
        }
    }
    Ok(())
}

fn display(p: &Path) -> String {
    match p.canonicalize() {
        Ok(c) => c.display().to_string(),
        Err(_) => p.display().to_string(),
    }
}
