//! The HTML report in a real browser: headless Chromium driven over the
//! DevTools protocol (a websocket). It opens the seed fixture's report,
//! steps with the keyboard and the buttons, checks that at the step where
//! B exits under 2.6.34-rc3 the page's mapping arrow points at a freed
//! anon_vma (and at a live one under 2.6.34, side by side), that nothing
//! was fetched and nothing was logged as an error, and keeps a screenshot
//! under target/.
//!
//! Without a browser (none of $PTEMU_CHROMIUM, chromium, chromium-browser,
//! google-chrome) the test prints that it skipped; with
//! PTEMU_REQUIRE_BROWSER=1 (as .ci/run sets) a missing browser fails it.

use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ptemu_viz as viz;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};
use viz::html::{CompareEras, EraPictures, FilePictures};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn find_browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PTEMU_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Kills the browser when the test ends, however it ends.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Cdp {
    ws: WebSocket<TcpStream>,
    next: u64,
    session: Option<String>,
    /// Every event seen, in order.
    events: Vec<Value>,
}

impl Cdp {
    fn send(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).expect("send to the browser");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no answer to {method} within 30 s");
            let v = self.read();
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    fn read(&mut self) -> Value {
        loop {
            match self.ws.read().expect("read from the browser") {
                Message::Text(t) => return serde_json::from_str(&t).expect("DevTools JSON"),
                Message::Close(_) => panic!("the browser closed the connection"),
                _ => continue,
            }
        }
    }

    /// Waits for an event by name (already seen ones count).
    fn wait_event(&mut self, method: &str) {
        let seen = |evs: &[Value]| evs.iter().any(|e| e["method"] == method);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !seen(&self.events) {
            assert!(Instant::now() < deadline, "no {method} within 30 s");
            let v = self.read();
            self.events.push(v);
        }
    }

    /// Evaluates an expression in the page; returns its JSON value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.send(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("evaluating {expr}: {ex}");
        }
        r["result"]["value"].clone()
    }

    fn key(&mut self, key: &str, code: u32) {
        for ty in ["keyDown", "keyUp"] {
            self.send(
                "Input.dispatchKeyEvent",
                json!({ "type": ty, "key": key, "code": key, "windowsVirtualKeyCode": code }),
            );
        }
    }

    /// A real mouse click in the middle of the element `selector`.
    fn click(&mut self, selector: &str) {
        let r = self.eval(&format!(
            "(() => {{ const r = document.querySelector({}).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(selector)
        ));
        let (x, y) = (r[0].as_f64().expect("x"), r[1].as_f64().expect("y"));
        for ty in ["mousePressed", "mouseReleased"] {
            self.send(
                "Input.dispatchMouseEvent",
                json!({ "type": ty, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let Some(v) = val(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// What the visible frame of a pane shows.
const PANE: &str = r#"(pane) => {
  const f = document.querySelector('#' + pane + ' .frame');
  if (!f) return null;
  const svg = f.querySelector('svg.rmap');
  const arrows = [...svg.querySelectorAll('path[data-rel="mapping"]')].map(e => {
    const node = svg.querySelector('g[data-key="' + e.dataset.to + '"]');
    const r = node ? node.getBoundingClientRect() : null;
    return { from: e.dataset.from, to: e.dataset.to, state: e.dataset.state,
             node_state: node ? node.dataset.state : null,
             node_text: node ? node.textContent : null,
             node_visible: !!r && r.width > 0 && r.height > 0 };
  });
  return { era: f.dataset.era, step: +f.dataset.step,
           op: f.querySelector('.op').textContent, arrows,
           unreachable: svg.querySelectorAll('g[data-state="unreachable"]').length,
           hash: location.hash };
}"#;

#[test]
fn report_in_headless_chromium() {
    let Some(browser) = find_browser() else {
        assert!(
            std::env::var_os("PTEMU_REQUIRE_BROWSER").is_none(),
            "PTEMU_REQUIRE_BROWSER is set but no chromium was found"
        );
        // Straight to stderr: the test harness captures print! and eprint!.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: report_in_headless_chromium: no chromium found (install Debian's chromium or set PTEMU_CHROMIUM)"
        );
        return;
    };
    let root = root().canonicalize().expect("workspace root");
    let mut scn =
        scenario::parse_file(&root.join("fixtures/seed-swapin.scn")).expect("seed parses");
    scn.file = "fixtures/seed-swapin.scn".to_string();
    let eras: Vec<EraPictures> = scn
        .setup
        .eras
        .iter()
        .map(|e| {
            let (run, snapshots) = viz::snapshots(&scn, &e.value);
            EraPictures { run, snapshots }
        })
        .collect();
    let compare = CompareEras { left: Some("2.6.34-rc3".into()), right: Some("2.6.34".into()) };
    let html = viz::html::report(&[FilePictures { file: scn.file.clone(), eras }], &compare);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&out_dir).expect("artifact dir");
    let report = out_dir.join("seed-swapin.html");
    std::fs::write(&report, &html).expect("write the report");
    let report = report.canonicalize().expect("report path");
    let url = format!("file://{}", report.display());

    let profile = tempfile::tempdir().expect("profile dir");
    let child = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1600,1200",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut guard = Browser(child);

    // Chromium writes the port and the browser target's path here.
    let port_file = profile.path().join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (port, path) = loop {
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            let mut l = s.lines();
            if let (Some(p), Some(w)) = (l.next(), l.next()) {
                break (p.trim().to_string(), w.trim().to_string());
            }
        }
        if let Ok(Some(status)) = guard.0.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = guard.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("chromium exited ({status}) before opening DevTools: {err}");
        }
        assert!(Instant::now() < deadline, "chromium did not open DevTools within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let stream = TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect to DevTools");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
        .expect("DevTools handshake");
    let mut cdp = Cdp { ws, next: 0, session: None, events: Vec::new() };
    let target = cdp.send("Target.createTarget", json!({ "url": "about:blank" }));
    let attached = cdp
        .send("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }));
    cdp.session = Some(attached["sessionId"].as_str().expect("session").to_string());
    for m in ["Page.enable", "Runtime.enable", "Log.enable", "Network.enable"] {
        cdp.send(m, json!({}));
    }
    cdp.send(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 1600, "height": 1200, "deviceScaleFactor": 1, "mobile": false }),
    );
    cdp.events.clear();
    cdp.send("Page.navigate", json!({ "url": format!("{url}#file=seed-swapin&era=2.6.34-rc3") }));
    cdp.wait_event("Page.loadEventFired");
    let pane = |cdp: &mut Cdp, p: &str| cdp.eval(&format!("({PANE})({})", json!(p)));

    // It renders: step 0 of 2.6.34-rc3, 17 steps in the timeline.
    let v = pane(&mut cdp, "left");
    assert_eq!(v["era"], "2.6.34-rc3", "{v}");
    assert_eq!(v["step"], 0, "{v}");
    assert_eq!(cdp.eval("document.querySelectorAll('#timeline button').length"), 17);

    // Stepping with the keyboard: eight times right arrow is B's exit.
    for _ in 0..8 {
        cdp.key("ArrowRight", 39);
    }
    let v = pane(&mut cdp, "left");
    assert_eq!(v["step"], 8, "{v}");
    assert!(v["op"].as_str().is_some_and(|s| s.ends_with("B exit")), "{v}");
    assert!(v["hash"].as_str().is_some_and(|h| h.contains("step=8")), "{v}");
    // The page's mapping points at B's anon_vma, drawn freed.
    let arrows = v["arrows"].as_array().expect("arrows");
    assert_eq!(arrows.len(), 1, "{v}");
    let a = &arrows[0];
    assert_eq!(a["state"], "freed", "{v}");
    assert_eq!(a["to"], "av:av2", "{v}");
    assert_eq!(a["node_state"], "freed", "{v}");
    assert!(a["node_visible"].as_bool().unwrap_or(false), "{v}");
    assert!(
        a["node_text"].as_str().is_some_and(|t| t.contains("FREED") && t.contains("(B)")),
        "{v}"
    );
    assert_eq!(v["unreachable"], 1, "A's mapping drawn rmap-unreachable: {v}");

    // Stepping with the buttons: back to A's swap-in, forward again.
    cdp.click("#prev");
    let v = pane(&mut cdp, "left");
    assert_eq!(v["step"], 7, "{v}");
    assert_eq!(v["arrows"][0]["state"], "live", "{v}");
    assert_eq!(v["unreachable"], 1, "{v}");
    cdp.click("#next");
    assert_eq!(pane(&mut cdp, "left")["step"], 8);
    // A timeline chip and End/Home.
    cdp.click("#timeline button[data-step='14']");
    let v = pane(&mut cdp, "left");
    assert_eq!(v["step"], 14, "{v}");
    assert_eq!(v["arrows"][0]["state"], "reused", "the freed slot is now C's anon_vma: {v}");
    cdp.key("End", 35);
    assert_eq!(pane(&mut cdp, "left")["step"], 16);
    cdp.key("Home", 36);
    assert_eq!(pane(&mut cdp, "left")["step"], 0);

    // A linked step, side by side: the fix at a glance.
    cdp.eval("location.hash = '#file=seed-swapin&era=2.6.34-rc3&vs=2.6.34&step=8'; 0");
    let deadline = Instant::now() + Duration::from_secs(10);
    let right = loop {
        let r = pane(&mut cdp, "right");
        if r["step"] == 8 {
            break r;
        }
        assert!(Instant::now() < deadline, "the linked step did not show: {r}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(right["era"], "2.6.34", "{right}");
    assert_eq!(right["arrows"][0]["state"], "live", "2.6.34 keeps the mapping on A's: {right}");
    assert_eq!(right["arrows"][0]["to"], "av:av1", "{right}");
    assert_eq!(right["unreachable"], 0, "{right}");
    let left = pane(&mut cdp, "left");
    assert_eq!(left["arrows"][0]["state"], "freed", "{left}");

    let shot = cdp
        .send("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": false }));
    let png = decode_base64(shot["data"].as_str().expect("png data"));
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let shot_path = out_dir.join("seed-swapin-2.6.34-rc3-vs-2.6.34-step8.png");
    std::fs::write(&shot_path, &png).expect("write the screenshot");
    println!("screenshot: {} ({} bytes)", shot_path.display(), png.len());

    // Nothing logged as an error, nothing thrown, nothing fetched.
    let mut problems = Vec::new();
    for e in &cdp.events {
        let m = e["method"].as_str().unwrap_or("");
        let p = &e["params"];
        match m {
            "Runtime.exceptionThrown" => problems.push(format!("exception: {p}")),
            "Runtime.consoleAPICalled"
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                problems.push(format!("console.{}: {}", p["type"], p["args"]));
            }
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                problems.push(format!("log: {}", p["entry"]["text"]));
            }
            "Network.requestWillBeSent" => {
                let u = p["request"]["url"].as_str().unwrap_or("");
                if !u.starts_with(&url) {
                    problems.push(format!("fetched {u}"));
                }
            }
            _ => {}
        }
    }
    assert!(problems.is_empty(), "the report misbehaved in the browser:\n{}", problems.join("\n"));
}
