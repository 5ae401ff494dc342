//! The rmap picture: pages and swap slots, processes with their VMAs and
//! PTEs, the anon_vma_chains and the anon_vmas, in four columns.
//!
//! Layout (a layered layout of our own, fixed columns left to right):
//!
//! ```text
//!  pages, swap   <-PTE-  processes/VMAs/PTEs  -AVC->  anon_vma_chains  ->  anon_vmas
//!      |                                                                     ^
//!      +---- page->mapping: left lane, over the top, down the right lane ----+
//! ```
//!
//! Each column keeps its order (pages by the first PTE that reaches them,
//! processes by pid, anon_vmas by id) and places each node as near as it
//! can to the mean height of what links to it without overlapping the one
//! above. The long `page->mapping` arrows each get their own lane, so they
//! never cross a box. Freed and reused anon_vmas, a mapping that names one,
//! and an rmap-unreachable PTE have their own styles and a stamp; what
//! changed since the previous step has a yellow halo.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use mm::MappingView;

use crate::snapshot::{AvState, PteTarget, Snapshot, changed};
use crate::svg::{STYLE, esc, markers, n, rect, text, text_width};

/// What goes around a picture.
#[derive(Clone, Debug, Default)]
pub struct SvgOptions {
    /// A title line at the top.
    pub title: Option<String>,
    /// Prefix of the ids inside the picture (markers), so that several
    /// pictures can share one HTML page.
    pub id_prefix: String,
    /// Draw the legend under the picture.
    pub legend: bool,
    /// Carry the stylesheet inside the picture (a lone SVG file); the HTML
    /// report has it once in its own `<style>`.
    pub style: bool,
}

const M: f64 = 20.0;
const LINE: f64 = 15.0;
const LANE: f64 = 9.0;
const GAP_PTE: f64 = 84.0;
const GAP: f64 = 44.0;
const AVC_W: f64 = 58.0;
const AVC_H: f64 = 20.0;
const LEGEND_COL: f64 = 282.0;

struct Box2 {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Box2 {
    fn cy(&self) -> f64 {
        self.y + self.h / 2.0
    }
    fn right(&self) -> f64 {
        self.x + self.w
    }
}

fn halo(out: &mut String, b: &Box2) {
    rect(out, b.x - 4.0, b.y - 4.0, b.w + 8.0, b.h + 8.0, 8.0, "chg");
}

fn mapping_text(m: &MappingView, owner: &BTreeMap<String, String>) -> String {
    let lab = |id: &str| match owner.get(id) {
        Some(o) => format!("{id} ({o})"),
        None => id.to_string(),
    };
    match m {
        MappingView::NotAnon => "mapping: not anon".to_string(),
        MappingView::Live { id } => format!("mapping -> {}", lab(id)),
        MappingView::Freed { id, .. } => format!("mapping -> {} FREED", lab(id)),
        MappingView::Reused { id, now, .. } => {
            format!("mapping -> {} FREED, slot now {now}", lab(id))
        }
    }
}

/// Draws the rmap picture of `now`, with what changed since `prev` haloed.
pub fn rmap_svg(now: &Snapshot, prev: Option<&Snapshot>, opts: &SvgOptions) -> String {
    let chg = changed(prev, now);
    let p = &opts.id_prefix;
    let owner: BTreeMap<String, String> =
        now.anon_vmas.iter().filter_map(|a| a.owner.clone().map(|o| (a.id.clone(), o))).collect();

    // ---- text of every box, to size the columns.
    let page_lines: Vec<Vec<String>> = now
        .pages
        .iter()
        .map(|pg| {
            let mut l = vec![
                format!("page {:#x}", pg.pfn),
                mapping_text(&pg.mapping, &owner),
                format!("index {:#x}  map {}  ref {}", pg.index, pg.mapcount, pg.refcount),
            ];
            let flags: Vec<&str> = pg
                .flags
                .iter()
                .map(String::as_str)
                .filter(|f| !matches!(*f, "UPTODATE" | "SWAPBACKED"))
                .collect();
            if !flags.is_empty() {
                l.push(flags.join(" "));
            }
            l
        })
        .collect();
    let slot_lines: Vec<Vec<String>> = now
        .slots
        .iter()
        .map(|s| {
            vec![
                format!("swap slot {}:{:#x}", s.swap_type, s.offset),
                format!("count {}{}", s.count, if s.has_cache { "  SWAP_HAS_CACHE" } else { "" }),
            ]
        })
        .collect();
    let col0_w = page_lines
        .iter()
        .chain(slot_lines.iter())
        .flatten()
        .map(|s| text_width(s, 12.0))
        .fold(190.0f64, f64::max)
        + 20.0;
    let mut col1_w: f64 = 300.0;
    for pr in &now.procs {
        col1_w = col1_w.max(
            text_width(&format!("{}  pid {}  cr3 {:#x}", pr.name, pr.pid, pr.cr3), 13.0) + 24.0,
        );
        for v in &pr.vmas {
            col1_w = col1_w.max(
                text_width(&format!("vma {:#x}-{:#x} {}", v.start, v.end, v.prot), 12.0) + 28.0,
            );
            for t in &v.ptes {
                col1_w = col1_w.max(text_width(&pte_text(t.addr, t.raw, &t.kind), 11.0) + 40.0);
                if t.unreachable {
                    col1_w = col1_w.max(
                        text_width("rmap-unreachable: not found from page->mapping", 12.0) + 40.0,
                    );
                }
            }
        }
    }
    let av_lines: Vec<Vec<String>> = now
        .anon_vmas
        .iter()
        .map(|a| {
            let mut l = vec![a.label()];
            match &a.state {
                AvState::Live => {
                    l.push(format!(
                        "root: {}  parent: {}",
                        a.root.as_deref().unwrap_or("self"),
                        a.parent.as_deref().unwrap_or("none")
                    ));
                    l.push(format!("refcount {}  {} vma link(s)", a.refcount, a.links));
                }
                AvState::Freed { at } => {
                    l.push("FREED (use after free)".to_string());
                    l.push(format!("by {at}"));
                }
                AvState::Reused { now, at } => {
                    l.push(format!("FREED, slot reused by {now}"));
                    l.push(format!("by {at}"));
                }
            }
            l
        })
        .collect();
    let col3_w =
        av_lines.iter().flatten().map(|s| text_width(s, 12.0)).fold(170.0f64, f64::max) + 20.0;

    // ---- lanes for page->mapping arrows.
    let mapped: Vec<usize> = now
        .pages
        .iter()
        .enumerate()
        .filter(|(_, pg)| !matches!(pg.mapping, MappingView::NotAnon))
        .filter(|(_, pg)| {
            now.anon_vmas.iter().any(|a| Some(a.id.as_str()) == map_target(&pg.mapping))
        })
        .map(|(i, _)| i)
        .collect();
    let lanes = mapped.len() as f64;
    let title_h = if opts.title.is_some() { 30.0 } else { 0.0 };
    let top_lane0 = M + title_h + 18.0;
    let head_y = top_lane0 + lanes * LANE + 16.0;
    let y0 = head_y + 16.0;
    let x0 = M + lanes * LANE + 12.0;
    let x1 = x0 + col0_w + GAP_PTE;
    let x2 = x1 + col1_w + GAP;
    let x3 = x2 + AVC_W + GAP;
    let arc_room = 56.0;
    let rx0 = x3 + col3_w + arc_room;
    let mut width = rx0 + lanes * LANE + M;
    if opts.legend {
        width = width.max(M + 4.0 * LEGEND_COL + M);
    }

    // ---- column 1: processes, VMAs, PTE rows.
    let mut vma_box: BTreeMap<String, Box2> = BTreeMap::new();
    let mut pte_row: BTreeMap<String, Box2> = BTreeMap::new();
    let mut proc_box: Vec<Box2> = Vec::new();
    let mut y = y0;
    for pr in &now.procs {
        let top = y;
        y += 26.0;
        for v in &pr.vmas {
            let vt = y;
            y += 2.0 * LINE + 8.0;
            for t in &v.ptes {
                let h = if t.unreachable { 34.0 } else { 19.0 };
                pte_row.insert(
                    format!("pte:{}:{:#x}", pr.name, t.addr),
                    Box2 { x: x1 + 14.0, y, w: col1_w - 28.0, h },
                );
                y += h + 3.0;
            }
            if v.ptes_omitted > 0 {
                y += 18.0;
            }
            y += 4.0;
            vma_box.insert(
                format!("vma:{}:{:#x}", pr.name, v.start),
                Box2 { x: x1 + 8.0, y: vt, w: col1_w - 16.0, h: y - vt },
            );
            y += 6.0;
        }
        if pr.vmas.is_empty() {
            y += 4.0;
        }
        proc_box.push(Box2 { x: x1, y: top, w: col1_w, h: y - top + 2.0 });
        y += 18.0;
    }
    let col1_bottom = y;

    // ---- column 2: AVCs, near their VMA.
    let mut avc_box: BTreeMap<String, Box2> = BTreeMap::new();
    let mut avc_of: Vec<(String, String, String)> = Vec::new(); // (vma key, avc id, av id)
    let mut cur = y0;
    for pr in &now.procs {
        for v in &pr.vmas {
            let vk = format!("vma:{}:{:#x}", pr.name, v.start);
            let vy = vma_box.get(&vk).map_or(cur, |b| b.y + 4.0);
            for (i, a) in v.avcs.iter().enumerate() {
                let want = vy + i as f64 * (AVC_H + 6.0);
                let yy = cur.max(want);
                avc_box.insert(a.id.clone(), Box2 { x: x2, y: yy, w: AVC_W, h: AVC_H });
                avc_of.push((vk.clone(), a.id.clone(), a.anon_vma.clone()));
                cur = yy + AVC_H + 6.0;
            }
        }
    }

    // ---- column 3: anon_vmas near the mean of their AVCs (or pages).
    let mut av_box: BTreeMap<String, Box2> = BTreeMap::new();
    let mut cur = y0;
    for (a, lines) in now.anon_vmas.iter().zip(&av_lines) {
        let h = lines.len() as f64 * LINE + 12.0;
        let ys: Vec<f64> = avc_of
            .iter()
            .filter(|(_, _, av)| *av == a.id)
            .filter_map(|(_, c, _)| avc_box.get(c).map(Box2::cy))
            .collect();
        let want =
            if ys.is_empty() { cur } else { ys.iter().sum::<f64>() / ys.len() as f64 - h / 2.0 };
        let yy = cur.max(want);
        av_box.insert(a.id.clone(), Box2 { x: x3, y: yy, w: col3_w, h });
        cur = yy + h + 14.0;
    }

    // ---- column 0: pages, each followed by the slot whose cache holds it;
    // then slots without a page.
    let mut page_box: BTreeMap<u64, Box2> = BTreeMap::new();
    let mut slot_box: BTreeMap<(u8, u64), Box2> = BTreeMap::new();
    let want_of = |target: PteTarget| -> Option<f64> {
        let ys: Vec<f64> = now
            .procs
            .iter()
            .flat_map(|pr| pr.vmas.iter().flat_map(move |v| v.ptes.iter().map(move |t| (pr, t))))
            .filter(|(_, t)| t.target == target)
            .filter_map(|(pr, t)| {
                pte_row.get(&format!("pte:{}:{:#x}", pr.name, t.addr)).map(Box2::cy)
            })
            .collect();
        if ys.is_empty() { None } else { Some(ys.iter().sum::<f64>() / ys.len() as f64) }
    };
    let mut cur = y0;
    let mut placed_slots: BTreeSet<(u8, u64)> = BTreeSet::new();
    for (pg, lines) in now.pages.iter().zip(&page_lines) {
        let h = lines.len() as f64 * LINE + 12.0;
        let want = want_of(PteTarget::Page(pg.pfn)).map_or(cur, |c| c - h / 2.0);
        let yy = cur.max(want);
        page_box.insert(pg.pfn, Box2 { x: x0, y: yy, w: col0_w, h });
        cur = yy + h + 14.0;
        if let Some(key) = pg.swapcache {
            if let Some(i) = now.slots.iter().position(|s| (s.swap_type, s.offset) == key) {
                let sh = slot_lines[i].len() as f64 * LINE + 12.0;
                cur += 16.0;
                slot_box.insert(key, Box2 { x: x0 + 24.0, y: cur, w: col0_w - 24.0, h: sh });
                placed_slots.insert(key);
                cur += sh + 16.0;
            }
        }
    }
    for (s, lines) in now.slots.iter().zip(&slot_lines) {
        let key = (s.swap_type, s.offset);
        if placed_slots.contains(&key) {
            continue;
        }
        let h = lines.len() as f64 * LINE + 12.0;
        let want = want_of(PteTarget::Slot(s.swap_type, s.offset)).map_or(cur, |c| c - h / 2.0);
        let yy = cur.max(want);
        slot_box.insert(key, Box2 { x: x0 + 24.0, y: yy, w: col0_w - 24.0, h });
        cur = yy + h + 14.0;
    }

    let bottom = [
        col1_bottom,
        cur,
        av_box.values().map(|b| b.y + b.h + 14.0).fold(y0, f64::max),
        avc_box.values().map(|b| b.y + b.h + 14.0).fold(y0, f64::max),
    ]
    .into_iter()
    .fold(y0 + 40.0, f64::max);
    let mut notes: Vec<String> = Vec::new();
    if now.pages_omitted > 0 {
        notes.push(format!("{} more pages not drawn", now.pages_omitted));
    }
    if now.procs.is_empty() {
        notes.push("no processes".to_string());
    }
    let gone = removed(prev, now);
    if !gone.is_empty() {
        notes.push(format!("gone since the previous step: {}", gone.join(", ")));
    }
    let legend_h = if opts.legend { 74.0 } else { 0.0 };
    let height = bottom + notes.len() as f64 * 18.0 + legend_h + M;

    // ---- draw.
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="pv rmap" width="{}" height="{}" viewBox="0 0 {} {}" data-era="{}" data-step="{}">"#,
        n(width),
        n(height),
        n(width),
        n(height),
        esc(&now.era),
        now.op_index
    );
    if opts.style {
        o.push_str(STYLE);
    }
    o.push_str(r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    if let Some(t) = &opts.title {
        text(&mut o, M, M + 14.0, "h", t);
    }
    text(&mut o, x0, head_y, "t", "PAGES · SWAP");
    text(&mut o, x1, head_y, "t", "PROCESSES · VMAS · PTES");
    text(&mut o, x2 - 8.0, head_y, "t", "AVCS");
    text(&mut o, x3, head_y, "t", "ANON_VMAS");

    // Halos first, under everything.
    for pr in &now.procs {
        for v in &pr.vmas {
            let k = format!("vma:{}:{:#x}", pr.name, v.start);
            if chg.contains(&k) {
                if let Some(b) = vma_box.get(&k) {
                    halo(&mut o, b);
                }
            }
            for t in &v.ptes {
                let k = format!("pte:{}:{:#x}", pr.name, t.addr);
                if chg.contains(&k) {
                    if let Some(b) = pte_row.get(&k) {
                        halo(&mut o, b);
                    }
                }
            }
        }
    }
    for (pr, b) in now.procs.iter().zip(&proc_box) {
        if chg.contains(&format!("proc:{}", pr.name)) {
            halo(&mut o, b);
        }
    }
    for (id, b) in &avc_box {
        if chg.contains(&format!("avc:{id}")) {
            halo(&mut o, b);
        }
    }
    for (id, b) in &av_box {
        if chg.contains(&format!("av:{id}")) {
            halo(&mut o, b);
        }
    }
    for (pfn, b) in &page_box {
        if chg.contains(&format!("page:{pfn:#x}")) || chg.contains(&format!("mapping:{pfn:#x}")) {
            halo(&mut o, b);
        }
    }
    for ((t, off), b) in &slot_box {
        if chg.contains(&format!("slot:{t}:{off:#x}")) {
            halo(&mut o, b);
        }
    }

    // Edges: AVC links.
    for (vk, avc, av) in &avc_of {
        let (Some(vb), Some(cb)) = (vma_box.get(vk), avc_box.get(avc)) else { continue };
        let sx = vb.right();
        let sy = vb.y + 12.0;
        let new = chg.contains(&format!("avc:{avc}"));
        curve(
            &mut o,
            sx,
            sy,
            cb.x,
            cb.cy(),
            "e avc",
            None,
            new,
            &format!("data-from=\"{vk}\" data-to=\"avc:{avc}\""),
        );
        if let Some(ab) = av_box.get(av) {
            curve(
                &mut o,
                cb.right(),
                cb.cy(),
                ab.x,
                ab.cy(),
                "e avc",
                Some(&format!("{p}a")),
                new,
                &format!("data-from=\"avc:{avc}\" data-to=\"av:{av}\""),
            );
        }
    }
    // Parent and root links, as arcs on the right of the anon_vma column.
    for a in &now.anon_vmas {
        let Some(b) = av_box.get(&a.id) else { continue };
        if let Some(pid) = &a.parent {
            if let Some(pb) = av_box.get(pid) {
                arc(
                    &mut o,
                    b.right(),
                    b.cy() - 6.0,
                    pb.right(),
                    pb.cy() - 6.0,
                    26.0,
                    "e par",
                    &format!("{p}par"),
                    &format!("data-from=\"av:{}\" data-to=\"av:{pid}\" data-rel=\"parent\"", a.id),
                );
            }
        }
        if let Some(rid) = &a.root {
            if a.parent.as_deref() != Some(rid.as_str()) {
                if let Some(rb) = av_box.get(rid) {
                    arc(
                        &mut o,
                        b.right(),
                        b.cy() + 6.0,
                        rb.right(),
                        rb.cy() + 6.0,
                        48.0,
                        "e root",
                        &format!("{p}par"),
                        &format!(
                            "data-from=\"av:{}\" data-to=\"av:{rid}\" data-rel=\"root\"",
                            a.id
                        ),
                    );
                }
            }
        }
    }
    // PTE edges.
    for pr in &now.procs {
        for v in &pr.vmas {
            for t in &v.ptes {
                let k = format!("pte:{}:{:#x}", pr.name, t.addr);
                let Some(rb) = pte_row.get(&k) else { continue };
                let (tb, class, mk, to) = match t.target {
                    PteTarget::Page(pfn) => {
                        (page_box.get(&pfn), "e pte", "pte", format!("page:{pfn:#x}"))
                    }
                    PteTarget::Slot(ty, off) => (
                        slot_box.get(&(ty, off)),
                        "e pte swp",
                        "swp",
                        format!("slot:{ty}:{off:#x}"),
                    ),
                    PteTarget::Nothing => (None, "", "", String::new()),
                };
                let Some(tb) = tb else { continue };
                let (class, mk) = if t.unreachable { ("e pte bad", "bad") } else { (class, mk) };
                curve(
                    &mut o,
                    rb.x,
                    rb.cy(),
                    tb.right(),
                    tb.cy(),
                    class,
                    Some(&format!("{p}{mk}")),
                    chg.contains(&k),
                    &format!("data-from=\"{k}\" data-to=\"{to}\""),
                );
            }
        }
    }
    // Swap cache links: slot -> page.
    for s in &now.slots {
        let (Some(pfn), Some(sb)) = (s.cached, slot_box.get(&(s.swap_type, s.offset))) else {
            continue;
        };
        let Some(pb) = page_box.get(&pfn) else { continue };
        let x = sb.x + 30.0;
        let _ = write!(
            o,
            r#"<path d="M{} {}L{} {}" class="e cache" marker-end="url(#{p}swp)" data-from="slot:{}:{:#x}" data-to="page:{pfn:#x}"/>"#,
            n(x),
            n(sb.y),
            n(x),
            n(pb.y + pb.h),
            s.swap_type,
            s.offset
        );
        text(&mut o, x + 8.0, (sb.y + pb.y + pb.h) / 2.0 + 4.0, "s", "swap cache");
    }
    // page->mapping arrows, each in its own lane.
    for (k, &i) in mapped.iter().enumerate() {
        let pg = &now.pages[i];
        let Some(target) = map_target(&pg.mapping) else { continue };
        let (Some(pb), Some(ab)) = (page_box.get(&pg.pfn), av_box.get(target)) else { continue };
        let kf = k as f64;
        let lx = x0 - 12.0 - kf * LANE;
        let ty = top_lane0 + kf * LANE;
        let rx = rx0 + kf * LANE;
        let (class, mk, state) = match pg.mapping {
            MappingView::Freed { .. } => ("e map freed", "freed", "freed"),
            MappingView::Reused { .. } => ("e map reused", "reused", "reused"),
            _ => ("e map", "map", "live"),
        };
        let d = format!(
            "M{} {}L{} {}L{} {}L{} {}L{} {}L{} {}",
            n(pb.x),
            n(pb.y + 22.0),
            n(lx),
            n(pb.y + 22.0),
            n(lx),
            n(ty),
            n(rx),
            n(ty),
            n(rx),
            n(ab.y + 16.0),
            n(ab.right()),
            n(ab.y + 16.0)
        );
        if chg.contains(&format!("mapping:{:#x}", pg.pfn)) {
            let _ = write!(o, r#"<path d="{d}" class="hl"/>"#);
        }
        let _ = write!(
            o,
            r#"<path d="{d}" class="{class}" stroke-linejoin="round" marker-end="url(#{p}{mk})" data-from="page:{:#x}" data-to="av:{}" data-rel="mapping" data-state="{state}"/>"#,
            pg.pfn,
            esc(target)
        );
        // Labels staggered along the top lane so that neighbours never overlap.
        let label = format!("page {:#x}->mapping", pg.pfn);
        let span = (rx - x0).max(1.0);
        let lx = x0 + 24.0 + (kf * 170.0) % (span - text_width(&label, 11.0) - 24.0).max(1.0);
        text(&mut o, lx, top_lane0 - 5.0, "s", &label);
    }

    // Nodes.
    for (pr, b) in now.procs.iter().zip(&proc_box) {
        let _ = write!(o, r#"<g class="node" data-key="proc:{}">"#, esc(&pr.name));
        rect(&mut o, b.x, b.y, b.w, b.h, 8.0, "proc");
        text(
            &mut o,
            b.x + 10.0,
            b.y + 17.0,
            "h",
            &format!("{}  pid {}  cr3 {:#x}", pr.name, pr.pid, pr.cr3),
        );
        o.push_str("</g>");
        for v in &pr.vmas {
            let vk = format!("vma:{}:{:#x}", pr.name, v.start);
            let Some(vb) = vma_box.get(&vk) else { continue };
            let _ = write!(o, r#"<g class="node" data-key="{}">"#, esc(&vk));
            rect(&mut o, vb.x, vb.y, vb.w, vb.h, 5.0, "vma");
            text(
                &mut o,
                vb.x + 8.0,
                vb.y + 15.0,
                "",
                &format!("vma {:#x}-{:#x} {}", v.start, v.end, v.prot),
            );
            text(
                &mut o,
                vb.x + 8.0,
                vb.y + 15.0 + LINE,
                "s",
                &format!("anon_vma {}  pgoff {:#x}", v.anon_vma.as_deref().unwrap_or("-"), v.pgoff),
            );
            o.push_str("</g>");
            for t in &v.ptes {
                let k = format!("pte:{}:{:#x}", pr.name, t.addr);
                let Some(rb) = pte_row.get(&k) else { continue };
                let _ = write!(
                    o,
                    r#"<g class="node" data-key="{}"{}>"#,
                    esc(&k),
                    if t.unreachable { r#" data-state="unreachable""# } else { "" }
                );
                rect(
                    &mut o,
                    rb.x,
                    rb.y,
                    rb.w,
                    rb.h,
                    3.0,
                    if t.unreachable { "pte bad" } else { "pte" },
                );
                text(&mut o, rb.x + 6.0, rb.y + 14.0, "s", &pte_text(t.addr, t.raw, &t.kind));
                if t.unreachable {
                    text(
                        &mut o,
                        rb.x + 6.0,
                        rb.y + 29.0,
                        "stamp",
                        "rmap-unreachable: not found from page->mapping",
                    );
                }
                o.push_str("</g>");
            }
            if v.ptes_omitted > 0 {
                text(
                    &mut o,
                    vb.x + 14.0,
                    vb.y + vb.h - 8.0,
                    "s",
                    &format!("+{} more PTEs", v.ptes_omitted),
                );
            }
        }
    }
    for (id, b) in &avc_box {
        let _ = write!(o, r#"<g class="node" data-key="avc:{}">"#, esc(id));
        rect(&mut o, b.x, b.y, b.w, b.h, 10.0, "avc");
        let _ = write!(
            o,
            r#"<text x="{}" y="{}" class="s" text-anchor="middle">{}</text>"#,
            n(b.x + b.w / 2.0),
            n(b.y + 14.0),
            esc(id)
        );
        o.push_str("</g>");
    }
    for (a, lines) in now.anon_vmas.iter().zip(&av_lines) {
        let Some(b) = av_box.get(&a.id) else { continue };
        let (class, state) = match a.state {
            AvState::Live => ("av", "live"),
            AvState::Freed { .. } => ("av freed", "freed"),
            AvState::Reused { .. } => ("av reused", "reused"),
        };
        let _ = write!(o, r#"<g class="node" data-key="av:{}" data-state="{state}">"#, esc(&a.id));
        rect(&mut o, b.x, b.y, b.w, b.h, 8.0, class);
        for (i, l) in lines.iter().enumerate() {
            let cls = match (i, &a.state) {
                (0, _) => "h",
                (1, AvState::Freed { .. }) => "stamp",
                (1, AvState::Reused { .. }) => "stamp o",
                _ => "s",
            };
            text(&mut o, b.x + 10.0, b.y + 17.0 + i as f64 * LINE, cls, l);
        }
        o.push_str("</g>");
    }
    for (pg, lines) in now.pages.iter().zip(&page_lines) {
        let Some(b) = page_box.get(&pg.pfn) else { continue };
        let bad = matches!(pg.mapping, MappingView::Freed { .. } | MappingView::Reused { .. });
        let _ = write!(
            o,
            r#"<g class="node" data-key="page:{:#x}"{}>"#,
            pg.pfn,
            if bad { r#" data-state="mapping-freed""# } else { "" }
        );
        rect(&mut o, b.x, b.y, b.w, b.h, 6.0, if bad { "page bad" } else { "page" });
        for (i, l) in lines.iter().enumerate() {
            let cls = match i {
                0 => "h",
                1 if bad => "warn",
                _ => "s",
            };
            text(&mut o, b.x + 10.0, b.y + 17.0 + i as f64 * LINE, cls, l);
        }
        o.push_str("</g>");
    }
    for (s, lines) in now.slots.iter().zip(&slot_lines) {
        let Some(b) = slot_box.get(&(s.swap_type, s.offset)) else { continue };
        let _ = write!(o, r#"<g class="node" data-key="slot:{}:{:#x}">"#, s.swap_type, s.offset);
        rect(&mut o, b.x, b.y, b.w, b.h, 6.0, "slot");
        for (i, l) in lines.iter().enumerate() {
            text(
                &mut o,
                b.x + 10.0,
                b.y + 17.0 + i as f64 * LINE,
                if i == 0 { "h" } else { "s" },
                l,
            );
        }
        o.push_str("</g>");
    }
    let mut ny = bottom;
    for note in &notes {
        text(&mut o, x0, ny + 12.0, "s", note);
        ny += 18.0;
    }
    if opts.legend {
        legend(&mut o, M, ny + 8.0, p);
    }
    markers(&mut o, p);
    o.push_str("</svg>\n");
    o
}

/// What the previous step showed that this one does not, in words.
fn removed(prev: Option<&Snapshot>, now: &Snapshot) -> Vec<String> {
    let Some(prev) = prev else { return Vec::new() };
    let now_keys = crate::snapshot::signatures(now);
    crate::snapshot::signatures(prev)
        .into_keys()
        .filter(|k| !now_keys.contains_key(k))
        .filter_map(|k| {
            let (kind, rest) = k.split_once(':')?;
            Some(match kind {
                "proc" => format!("process {rest}"),
                "vma" => format!("vma {}", rest.replacen(':', "@", 1)),
                "avc" => rest.to_string(),
                "av" => format!("anon_vma {rest}"),
                "page" => format!("page {rest}"),
                "slot" => format!("swap slot {rest}"),
                "pte" => format!("pte {}", rest.replacen(':', "@", 1)),
                _ => return None,
            })
        })
        .collect()
}

fn pte_text(addr: u64, raw: u64, kind: &str) -> String {
    format!("pte {addr:#x} = {raw:#018x} {kind}")
}

fn map_target(m: &MappingView) -> Option<&str> {
    match m {
        MappingView::NotAnon => None,
        MappingView::Live { id }
        | MappingView::Freed { id, .. }
        | MappingView::Reused { id, .. } => Some(id),
    }
}

#[allow(clippy::too_many_arguments)]
fn curve(
    o: &mut String,
    sx: f64,
    sy: f64,
    tx: f64,
    ty: f64,
    class: &str,
    marker: Option<&str>,
    new: bool,
    data: &str,
) {
    let dx = (tx - sx) / 2.0;
    let d = format!(
        "M{} {}C{} {} {} {} {} {}",
        n(sx),
        n(sy),
        n(sx + dx),
        n(sy),
        n(tx - dx),
        n(ty),
        n(tx),
        n(ty)
    );
    if new {
        let _ = write!(o, r#"<path d="{d}" class="hl"/>"#);
    }
    let _ = write!(o, r#"<path d="{d}" class="{class}""#);
    if let Some(m) = marker {
        let _ = write!(o, r#" marker-end="url(#{m})""#);
    }
    let _ = write!(o, " {data}/>");
}

#[allow(clippy::too_many_arguments)]
fn arc(
    o: &mut String,
    sx: f64,
    sy: f64,
    tx: f64,
    ty: f64,
    bulge: f64,
    class: &str,
    marker: &str,
    data: &str,
) {
    let d = format!(
        "M{} {}C{} {} {} {} {} {}",
        n(sx),
        n(sy),
        n(sx + bulge),
        n(sy),
        n(tx + bulge),
        n(ty),
        n(tx),
        n(ty)
    );
    let _ = write!(o, r#"<path d="{d}" class="{class}" marker-end="url(#{marker})" {data}/>"#);
}

fn legend(o: &mut String, x: f64, y: f64, p: &str) {
    let items: [(&str, &str, &str); 8] = [
        ("e pte", "pte", "PTE maps a page"),
        ("e pte swp", "swp", "PTE holds a swap entry"),
        ("e pte bad", "bad", "PTE the rmap walk cannot reach"),
        ("e avc", "a", "anon_vma_chain link"),
        ("e par", "par", "parent (dashed) / root (dotted)"),
        ("e map", "map", "page->mapping"),
        ("e map freed", "freed", "page->mapping to a freed anon_vma"),
        ("e map reused", "reused", "... to a reused slot"),
    ];
    for (i, (class, mk, label)) in items.iter().enumerate() {
        let col = (i % 4) as f64;
        let row = (i / 4) as f64;
        let lx = x + col * LEGEND_COL;
        let ly = y + row * 22.0 + 10.0;
        let _ = write!(
            o,
            r#"<path d="M{} {}L{} {}" class="{class}" marker-end="url(#{p}{mk})"/>"#,
            n(lx),
            n(ly),
            n(lx + 44.0),
            n(ly)
        );
        text(o, lx + 52.0, ly + 4.0, "s", label);
    }
    let ly = y + 2.0 * 22.0 + 4.0;
    rect(o, x, ly, 44.0, 14.0, 4.0, "chg");
    text(o, x + 52.0, ly + 11.0, "s", "changed since the previous step");
    rect(o, x + LEGEND_COL, ly, 44.0, 14.0, 4.0, "av freed");
    text(o, x + LEGEND_COL + 52.0, ly + 11.0, "s", "freed anon_vma");
}
