//! The page-table tree: for each process, the tables a walk reads from CR3
//! to every PTE the scenario names, each table showing only those entries,
//! raw and decoded, with an arrow from each entry to the table below.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::rmap_svg::SvgOptions;
use crate::snapshot::{Snapshot, WalkStep, changed};
use crate::svg::{STYLE, esc, markers, n, rect, text, text_width};

const M: f64 = 20.0;
const ROW: f64 = 20.0;
const HEAD: f64 = 24.0;
const COL_GAP: f64 = 46.0;

/// The level's table name.
pub fn level_name(level: u8) -> &'static str {
    match level {
        4 => "PML4",
        3 => "PDPT",
        2 => "PD",
        _ => "PT",
    }
}

/// One entry as a table row: index, raw value and what it points at.
pub fn entry_text(st: &WalkStep) -> String {
    let what = match (st.kind.as_str(), st.pfn) {
        ("present", Some(p)) if st.level > 1 => format!("-> table {p:#x}"),
        ("present", Some(p)) => format!("page {p:#x}"),
        ("protnone", Some(p)) => format!("PROT_NONE page {p:#x}"),
        ("swap", _) => st.detail.clone(),
        (k, _) => k.to_string(),
    };
    format!("[{:3}] {:#018x} {what}", st.index, st.raw)
}

struct Table<'a> {
    level: u8,
    frame: u64,
    rows: BTreeMap<usize, &'a WalkStep>,
    parent: Option<(u64, usize)>,
}

/// Draws the page-table tree of `now`, with entries changed since `prev`
/// haloed.
pub fn pgtable_svg(now: &Snapshot, prev: Option<&Snapshot>, opts: &SvgOptions) -> String {
    let chg = changed(prev, now);
    let p = &opts.id_prefix;
    // Per process (in walk order): its tables keyed by frame.
    let mut procs: Vec<(String, Vec<Table<'_>>)> = Vec::new();
    for w in &now.walks {
        if procs.last().is_none_or(|(name, _)| *name != w.proc) {
            procs.push((w.proc.clone(), Vec::new()));
        }
        let Some((_, tables)) = procs.last_mut() else { continue };
        let mut parent: Option<(u64, usize)> = None;
        for st in &w.steps {
            let t = match tables.iter_mut().position(|t| t.frame == st.table) {
                Some(i) => &mut tables[i],
                None => {
                    tables.push(Table {
                        level: st.level,
                        frame: st.table,
                        rows: BTreeMap::new(),
                        parent,
                    });
                    let last = tables.len() - 1;
                    &mut tables[last]
                }
            };
            t.rows.insert(st.index, st);
            parent = Some((st.table, st.index));
        }
    }
    let mut row_w: f64 = 280.0;
    for w in &now.walks {
        for st in &w.steps {
            row_w = row_w.max(text_width(&entry_text(st), 12.0) + 20.0);
        }
    }
    let col_w = row_w + 16.0;
    let col_x = |level: u8| M + f64::from(4 - level.min(4)) * (col_w + COL_GAP);
    let title_h = if opts.title.is_some() { 30.0 } else { 0.0 };

    // Placement: per process a band; in each level column, tables stacked
    // in first-walk order, each as near its parent entry as it can be.
    let mut pos: BTreeMap<(String, u64), (f64, f64, f64)> = BTreeMap::new(); // (x, y, h)
    let mut band_top: Vec<f64> = Vec::new();
    let mut y = M + title_h + 10.0;
    for (name, tables) in &procs {
        band_top.push(y);
        let top = y + 22.0;
        let mut cur: BTreeMap<u8, f64> = BTreeMap::new();
        let mut bottom = top;
        for t in tables {
            let h = HEAD + t.rows.len() as f64 * ROW + 6.0;
            let want = t
                .parent
                .and_then(|(pf, pi)| {
                    let (_, py, _) = pos.get(&(name.clone(), pf))?;
                    let parent = tables.iter().find(|x| x.frame == pf)?;
                    let k = parent.rows.keys().position(|&i| i == pi)?;
                    Some(py + HEAD + k as f64 * ROW - 4.0)
                })
                .unwrap_or(top);
            let c = cur.entry(t.level).or_insert(top);
            let ty = c.max(want);
            pos.insert((name.clone(), t.frame), (col_x(t.level), ty, h));
            *c = ty + h + 12.0;
            bottom = bottom.max(ty + h);
        }
        y = bottom + 26.0;
    }
    if procs.is_empty() {
        y += 24.0;
    }
    let width = col_x(1) + col_w + M;
    let height = y + M;

    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="pv ptree" width="{}" height="{}" viewBox="0 0 {} {}">"#,
        n(width),
        n(height),
        n(width),
        n(height)
    );
    if opts.style {
        o.push_str(STYLE);
    }
    o.push_str(r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    if let Some(t) = &opts.title {
        text(&mut o, M, M + 14.0, "h", t);
    }
    if procs.is_empty() {
        text(&mut o, M, M + title_h + 24.0, "s", "no process maps an address the scenario names");
    }
    for ((name, tables), top) in procs.iter().zip(&band_top) {
        text(&mut o, M, top + 12.0, "t", &format!("PROCESS {name}"));
        for t in tables {
            let Some(&(x, ty, h)) = pos.get(&(name.clone(), t.frame)) else { continue };
            // Edge from the parent entry.
            if let Some((pf, pi)) = t.parent {
                if let (Some(&(px, py, _)), Some(parent)) =
                    (pos.get(&(name.clone(), pf)), tables.iter().find(|x| x.frame == pf))
                {
                    if let Some(k) = parent.rows.keys().position(|&i| i == pi) {
                        let sy = py + HEAD + k as f64 * ROW + ROW / 2.0;
                        let sx = px + col_w;
                        let tx = x;
                        let tyy = ty + 12.0;
                        let dx = (tx - sx) / 2.0;
                        let _ = write!(
                            o,
                            r#"<path d="M{} {}C{} {} {} {} {} {}" class="e tree" marker-end="url(#{p}a)"/>"#,
                            n(sx),
                            n(sy),
                            n(sx + dx),
                            n(sy),
                            n(tx - dx),
                            n(tyy),
                            n(tx),
                            n(tyy)
                        );
                    }
                }
            }
            let _ = write!(o, r#"<g class="node" data-key="table:{}:{:#x}">"#, esc(name), t.frame);
            rect(&mut o, x, ty, col_w, h, 6.0, "tbl");
            text(
                &mut o,
                x + 8.0,
                ty + 16.0,
                "h",
                &format!("{} @ frame {:#x}", level_name(t.level), t.frame),
            );
            for (k, st) in t.rows.values().enumerate() {
                let ry = ty + HEAD + k as f64 * ROW;
                if chg.contains(&format!("entry:{name}:{}:{}", st.table, st.index)) {
                    rect(&mut o, x + 4.0, ry, col_w - 8.0, ROW - 2.0, 3.0, "chg");
                }
                rect(&mut o, x + 6.0, ry + 1.0, col_w - 12.0, ROW - 4.0, 3.0, "ent");
                let cls = match st.kind.as_str() {
                    "swap" => "s",
                    "none" => "s",
                    _ => "",
                };
                text(&mut o, x + 12.0, ry + 14.0, cls, &entry_text(st));
            }
            o.push_str("</g>");
        }
    }
    markers(&mut o, p);
    o.push_str("</svg>\n");
    o
}
