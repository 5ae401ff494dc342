//! `ptemu oracle` end to end: on a host that allows it (root, cgroup v1
//! memory controller, swapon), the seed's scenario runs on the real kernel
//! and agrees with ptemu; the kernel's own values are checked against what
//! Linux 6.18 is known to do; an interrupted run restores the machine.
//! Where the host does not allow it the tests say so on stderr and return.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oracle::WorkerCommand;
use oracle::observe::{Field, Place, Value, derive_fields};

fn ptemu() -> &'static str {
    env!("CARGO_BIN_EXE_ptemu")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(ptemu()).args(args).output().expect("ptemu runs")
}

/// Runs on the host are serialised (the oracle itself locks the machine,
/// but the checks around a run must not see another test's run).
static HOST: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn host_lock() -> std::sync::MutexGuard<'static, ()> {
    HOST.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The reason the oracle cannot run here, or None when it can.
fn unavailable() -> Option<String> {
    oracle::host_available().err().map(|e| e.to_string())
}

/// Nothing of an oracle run is left on the machine.
fn assert_restored(page_cluster_before: &str) {
    let swaps = std::fs::read_to_string("/proc/swaps").expect("/proc/swaps");
    assert!(!swaps.contains("ptemu-oracle-"), "swap left on: {swaps}");
    let left: Vec<_> = std::fs::read_dir("/sys/fs/cgroup/memory")
        .expect("memcg root")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ptemu-oracle-"))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
    let files: Vec<_> = std::fs::read_dir("/var/tmp")
        .expect("/var/tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".swap"))
        .filter(|e| e.file_name().to_string_lossy().starts_with("ptemu-oracle-"))
        .map(|e| e.path())
        .collect();
    assert!(files.is_empty(), "swap files left: {files:?}");
    let pc = std::fs::read_to_string("/proc/sys/vm/page-cluster").expect("page-cluster");
    assert_eq!(pc.trim(), page_cluster_before.trim(), "vm.page-cluster not restored");
}

/// Starts `cmd` (stderr piped) with the oracle's pause hook, waits (at
/// most `within`) until its host run has turned its swap file on, and
/// sends it SIGINT there.
fn interrupted_mid_run(cmd: &mut Command, within: Duration) -> std::process::Child {
    let child = cmd
        .env(oracle::host::PAUSE_ENV, "20000")
        .stderr(Stdio::piped())
        .spawn()
        .expect("ptemu starts");
    let deadline = Instant::now() + within;
    loop {
        let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
        if swaps.contains("ptemu-oracle-") {
            break;
        }
        assert!(Instant::now() < deadline, "the run never turned its swap file on");
        std::thread::sleep(Duration::from_millis(10));
    }
    let kill =
        Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(kill.success());
    child
}

fn page_cluster() -> String {
    std::fs::read_to_string("/proc/sys/vm/page-cluster").unwrap_or_default()
}

#[test]
fn seed_scenario_agrees_with_the_kernel() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED seed_scenario_agrees_with_the_kernel: {why}");
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let seed = fixture("seed-swapin.scn");
    let out = run(&["oracle", "--json", seed.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    let file = &v["files"][0];
    // rmap-walks have no host interface; every other step is compared.
    let plan = oracle::load(&seed).expect("seed plans");
    let walks = plan.steps.iter().filter(|s| s.action.verb() == "rmap-walk").count();
    assert!(walks > 0);
    assert_eq!(file["steps"], plan.steps.len());
    assert_eq!(file["steps_compared"], plan.steps.len() - walks);
    assert_eq!(file["notes"].as_array().map(Vec::len), Some(walks));
    assert!(v["fields_compared"].as_u64().is_some_and(|n| n > 100), "{v}");
    assert_eq!(v["fields_compared"], v["fields_agreeing"]);
    assert_eq!(v["disagreements"], 0);
    assert_restored(&pc);
}

/// The kernel side alone, checked against what 6.18 is known to do, so the
/// agreement above cannot come from two sides that read nothing.
#[test]
fn kernel_side_reads_what_linux_does() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED kernel_side_reads_what_linux_does: {why}");
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let plan = oracle::load(&probe("seed.scn")).expect("seed plans");
    let worker = WorkerCommand { program: ptemu().into(), args: vec!["oracle-worker".into()] };
    let kernel = oracle::host::run_kernel(&plan, &worker).expect("kernel run");
    assert_restored(&pc);
    let names = |p| plan.proc_name(p).to_string();
    let field = |step: usize, proc: usize, f: Field| -> Option<Value> {
        let obs = kernel.steps.get(step - 1)?.as_ref()?;
        derive_fields(obs, &names).get(&(Place::Page(proc, 0x7f00_0000_0000), f)).cloned()
    };
    let (a, b) = (0, 1);
    // Step 3: A wrote the page: mapped once, exclusive, PageAnonExclusive.
    assert_eq!(field(3, a, Field::Mapcount), Some(Value::Num(1)));
    assert_eq!(field(3, a, Field::Exclusive), Some(Value::Bool(true)));
    assert_eq!(field(3, a, Field::AnonExclusive), Some(Value::Bool(true)));
    assert_eq!(field(3, a, Field::Anon), Some(Value::Bool(true)));
    // Step 4: fork shares it and clears PageAnonExclusive.
    assert_eq!(field(4, b, Field::Mapcount), Some(Value::Num(2)));
    assert_eq!(field(4, b, Field::Frame), Some(Value::Class("A:0x7f0000000000".into())));
    assert_eq!(field(4, a, Field::AnonExclusive), Some(Value::Bool(false)));
    // Step 5: reclaim made both swap entries of one slot on device 0.
    assert_eq!(field(5, a, Field::Swapped), Some(Value::Bool(true)));
    assert_eq!(field(5, b, Field::SwapType), Some(Value::Num(0)));
    assert_eq!(field(5, b, Field::SwapSlot), Some(Value::Class("A:0x7f0000000000".into())));
    // Step 6: B's swap-in: in the swap cache, mapped once, A still swapped.
    assert_eq!(field(6, b, Field::Swapcache), Some(Value::Bool(true)));
    assert_eq!(field(6, b, Field::Mapcount), Some(Value::Num(1)));
    assert_eq!(field(6, a, Field::Swapped), Some(Value::Bool(true)));
    // Step 7: A maps the same swap-cache page.
    assert_eq!(field(7, a, Field::Mapcount), Some(Value::Num(2)));
    assert_eq!(field(7, a, Field::Frame), Some(Value::Class("A:0x7f0000000000".into())));
    let read = kernel.steps[6].as_ref().and_then(|o| o.access).expect("A's read");
    assert_eq!(read.value, Some(0xaa));
}

#[test]
fn segv_is_caught_not_fatal() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED segv_is_caught_not_fatal: {why}");
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let plan = oracle::load(&fixture("segv.scn")).expect("segv plans");
    let worker = WorkerCommand { program: ptemu().into(), args: vec!["oracle-worker".into()] };
    let kernel = oracle::host::run_kernel(&plan, &worker).expect("kernel run");
    assert_restored(&pc);
    let segvs: Vec<bool> = plan
        .steps
        .iter()
        .zip(&kernel.steps)
        .filter_map(|(_, o)| o.as_ref().and_then(|o| o.access).map(|a| a.segv))
        .collect();
    // read 0, write unmapped, write r (none), read r, write r (zero page),
    // read r, read none, write none, write rw, read past end, read rw.
    assert_eq!(segvs, vec![true, true, true, false, true, false, true, true, false, true, false]);
}

#[test]
fn interrupt_restores_the_machine() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED interrupt_restores_the_machine: {why}");
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let seed = fixture("seed-swapin.scn");
    let mut cmd = Command::new(ptemu());
    cmd.args(["oracle", seed.to_str().expect("utf-8 path")]).stdout(Stdio::null());
    let mut child = interrupted_mid_run(&mut cmd, Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("ptemu oracle did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(status.code(), Some(130), "stderr: {err}");
    assert!(err.contains("interrupted by signal 2; the machine was restored"), "stderr: {err}");
    assert_restored(&pc);
}

/// The reproducer `ptemu explore --oracle` wrote for 6.18 without the
/// fork-child merge rule (fixtures/explore/oracle/): the host kernel agrees
/// with 6.18 on it and disagrees, on B's maps after the mmap, with the set
/// that drops the rule. `--semantics` must be built from 6.18.
#[test]
fn oracle_semantics_show_where_the_kernel_disagrees_with_a_changed_rule() {
    let file = fixture("explore/oracle/merge-refuses-fork-children-no.scn");
    let path = file.to_str().expect("utf-8 path");
    let bad = run(&["oracle", "--semantics", "seed+clone_order=preserved", path]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("built from 6.18"));
    if let Some(why) = unavailable() {
        eprintln!(
            "SKIPPED oracle_semantics_show_where_the_kernel_disagrees_with_a_changed_rule: {why}"
        );
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let same = run(&["oracle", path]);
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stdout));
    let text = std::fs::read_to_string(&file).expect("the reproducer");
    let set = "6.18+merge_refuses_fork_children=no";
    assert!(text.contains(&format!("ptemu oracle --semantics {set} FILE")), "{text}");
    let out = run(&["oracle", "--json", "--semantics", set, path]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(v["disagreements"], 1, "{v}");
    let d = &v["files"][0]["disagreements"][0];
    assert!(d.to_string().contains("maps"), "{d}");
    assert!(d.to_string().contains("mmap"), "{d}");
    assert_restored(&pc);
}

/// SIGINT during `ptemu explore --oracle` stops the whole search (not just
/// the sequence the host was running), restores the machine, and still
/// prints the report of what ran, marked interrupted, with exit 130.
#[test]
fn interrupt_stops_an_oracle_search() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED interrupt_stops_an_oracle_search: {why}");
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let mut cmd = Command::new(ptemu());
    cmd.args(["explore", "--era", "6.18", "--oracle", "--seed", "3", "--time", "120s"])
        .args(["--jobs", "1", "--json"])
        .stdout(Stdio::piped());
    let child = interrupted_mid_run(&mut cmd, Duration::from_secs(30));
    let start = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert!(start.elapsed() < Duration::from_secs(30), "the search went on after SIGINT");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {err}");
    assert!(err.contains("interrupted by signal 2"), "stderr: {err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["interrupted"], 2);
    assert_restored(&pc);
}

#[test]
fn without_root_it_says_why_and_exits_2() {
    let seed = fixture("seed-swapin.scn");
    let Ok(out) = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", ptemu(), "oracle"])
        .arg(&seed)
        .output()
    else {
        eprintln!("SKIPPED without_root_it_says_why_and_exits_2: setpriv is not available");
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("setpriv:") {
        eprintln!("SKIPPED without_root_it_says_why_and_exits_2: setpriv failed: {err}");
        return;
    }
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("cannot run the oracle here: it needs root"), "stderr: {err}");
}

#[test]
fn bad_input_exits_2_before_touching_the_machine() {
    let out = run(&["oracle", "/nonexistent/x.scn"]);
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.scn");
    std::fs::write(&bad, "spawn A\nA frobnicate\n").expect("write");
    let out = run(&["oracle", bad.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.scn:2"));
    let out = run(&["oracle"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["oracle-worker"]);
    assert_eq!(out.status.code(), Some(2));
}

fn probe(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../oracle/tests/data").join(name)
}

/// The oracle's own probes (beyond fixtures/): every field agrees.
#[test]
fn probes_agree_with_the_kernel() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED probes_agree_with_the_kernel: {why}");
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let files: Vec<PathBuf> = [
        "mixed.scn",
        "two-devices.scn",
        "full-device.scn",
        "shared-swapcache.scn",
        "fork-in-swapcache.scn",
        "protections.scn",
    ]
    .iter()
    .map(|n| probe(n))
    .collect();
    let out =
        Command::new(ptemu()).arg("oracle").arg("--json").args(&files).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    for f in v["files"].as_array().expect("files") {
        assert_eq!(f["steps"], f["steps_compared"], "{f}");
        assert!(f["fields_compared"].as_u64().is_some_and(|n| n > 50), "{f}");
    }
    assert_eq!(v["disagreements"], 0);
    assert_restored(&pc);
}

/// The default machine (no `swap` line) is compared at every step, and a
/// scenario larger than its memory reclaims under pressure on both sides:
/// what each kernel evicted is its own class, and everything else (values
/// read among it) agrees.
#[test]
fn default_machine_and_pressure_are_compared() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED default_machine_and_pressure_are_compared: {why}");
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let out = Command::new(ptemu())
        .arg("oracle")
        .arg("--json")
        .arg(probe("default-machine.scn"))
        .arg(probe("pressure.scn"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(v["disagreements"], 0, "{stdout}");
    assert_eq!(v["steps"], v["steps_compared"], "{stdout}");
    let files = v["files"].as_array().expect("files");
    // The default machine: every step, every field.
    // (A swap-in the kernel left in the swap cache because of a reference
    // held at that instant is the one difference allowed: see
    // DiffClass::SwapCacheKept.)
    let policy0 = files[0]["policy"].as_array().expect("policy");
    assert!(policy0.iter().all(|d| d["class"] == "swap-cache-kept"), "{stdout}");
    assert_eq!(
        files[0]["fields_compared"].as_u64().expect("count"),
        files[0]["fields_agreeing"].as_u64().expect("count") + policy0.len() as u64,
        "{stdout}"
    );
    // Under pressure: the reads (one value each) are all compared and agree;
    // each policy difference shows both choices.
    assert!(files[1]["fields_compared"].as_u64().is_some_and(|n| n > 1000), "{stdout}");
    for d in files[1]["policy"].as_array().expect("policy") {
        assert!(d["class"] == "eviction-policy" || d["class"] == "swap-cache-kept", "{d}");
        assert_ne!(d["kernel"], d["ptemu"]);
    }
    assert_restored(&pc);
}

/// Failing system calls, VMA split and merge, and the 40 generated
/// scenarios (fixtures/random): every step compared, every result, maps
/// listing, value and SIGSEGV as the kernel's; only eviction choices under
/// pressure may differ.
#[test]
fn failing_calls_maps_and_random_scenarios_agree() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED failing_calls_maps_and_random_scenarios_agree: {why}");
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let mut files = vec![fixture("failing-syscalls.scn"), fixture("vma-split-merge.scn")];
    let mut random: Vec<PathBuf> = std::fs::read_dir(fixture("random"))
        .expect("fixtures/random")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "scn"))
        .collect();
    random.sort();
    assert!(random.len() >= 40, "{} generated scenarios", random.len());
    files.extend(random);
    let out =
        Command::new(ptemu()).arg("oracle").arg("--json").args(&files).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(v["disagreements"], 0, "{stdout}");
    assert_eq!(v["steps"], v["steps_compared"], "{stdout}");
    for f in v["files"].as_array().expect("files") {
        for d in f["policy"].as_array().expect("policy") {
            assert!(d["class"] == "eviction-policy" || d["class"] == "swap-cache-kept", "{d}");
        }
    }
    assert_restored(&pc);
}

/// A step the kernel cannot do is reported and nothing after it compared.
#[test]
fn a_step_the_kernel_cannot_do_is_left_out() {
    if let Some(why) = unavailable() {
        eprintln!("SKIPPED a_step_the_kernel_cannot_do_is_left_out: {why}");
        return;
    }
    let _host = host_lock();
    let pc = page_cluster();
    let out = run(&["oracle", probe("clash.scn").to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("not compared: step 2 (line 6): kernel: [0x555555554000, 0x555555555000) collides with a mapping of the worker process itself"),
        "{stdout}"
    );
    assert!(stdout.contains("this step and the 1 after it are not compared"), "{stdout}");
    // The one field: spawn's maps (no scenario VMA on either side).
    assert!(stdout.contains("3 steps, 1 compared; 1 fields compared, 1 agree"), "{stdout}");
    assert_restored(&pc);
}
