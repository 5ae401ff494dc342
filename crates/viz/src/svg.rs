//! A few helpers for writing SVG and XML-ish text by hand.

use std::fmt::Write as _;

/// Escapes text for XML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Width of `s` in pixels in the pictures' monospace font at `size`.
pub(crate) fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * 0.6
}

/// A number with at most one decimal, without a trailing `.0`.
pub(crate) fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() { format!("{}", r as i64) } else { format!("{r:.1}") }
}

/// Appends `<text>` at (x, y) with a class.
pub(crate) fn text(out: &mut String, x: f64, y: f64, class: &str, s: &str) {
    let _ = write!(out, r#"<text x="{}" y="{}" class="{class}">{}</text>"#, n(x), n(y), esc(s));
}

/// Appends a rectangle with rounded corners.
pub(crate) fn rect(out: &mut String, x: f64, y: f64, w: f64, h: f64, r: f64, class: &str) {
    let _ = write!(
        out,
        r#"<rect x="{}" y="{}" width="{}" height="{}" rx="{}" class="{class}"/>"#,
        n(x),
        n(y),
        n(w),
        n(h),
        n(r)
    );
}

/// The style every picture carries, so that a lone SVG file looks the same
/// as the report (the report's own CSS adds only the page around it).
pub(crate) const STYLE: &str = r#"<style>
.pv text{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px;fill:#1d2433}
.pv .h{font-weight:700;font-size:13px}
.pv .s{font-size:11px;fill:#4a5568}
.pv .t{font-size:12px;font-weight:700;fill:#64748b;letter-spacing:.08em}
.pv .proc{fill:#eef4ff;stroke:#3b6fd8;stroke-width:1.5}
.pv .vma{fill:#fff;stroke:#8aa6e0}
.pv .pte{fill:#f8fafc;stroke:#cbd5e1}
.pv .pte.bad{fill:#fff1f1;stroke:#d92d20;stroke-width:2}
.pv .avc{fill:#f1f5f9;stroke:#64748b}
.pv .av{fill:#ecfdf3;stroke:#16a34a;stroke-width:1.5}
.pv .av.freed{fill:#fee4e2;stroke:#d92d20;stroke-width:3;stroke-dasharray:7 4}
.pv .av.reused{fill:#fff4e5;stroke:#e8590c;stroke-width:3;stroke-dasharray:7 4}
.pv .page{fill:#fffbeb;stroke:#d97706;stroke-width:1.5}
.pv .page.bad{fill:#fee4e2;stroke:#d92d20;stroke-width:2.5}
.pv .slot{fill:#f5f3ff;stroke:#7c3aed;stroke-width:1.5}
.pv .tbl{fill:#f8fafc;stroke:#94a3b8}
.pv .ent{fill:#fff;stroke:#e2e8f0}
.pv .chg{fill:none;stroke:#facc15;stroke-width:6;opacity:.75}
.pv .stamp{font-weight:800;fill:#d92d20;font-size:12px}
.pv .stamp.o{fill:#e8590c}
.pv .warn{fill:#d92d20;font-weight:700}
.pv .e{fill:none;stroke:#64748b;stroke-width:1.4}
.pv .e.avc{stroke:#64748b}
.pv .e.par{stroke:#16a34a;stroke-dasharray:4 3}
.pv .e.root{stroke:#15803d;stroke-dasharray:1 3;stroke-width:1.6}
.pv .e.pte{stroke:#2563eb;stroke-width:1.6}
.pv .e.pte.swp{stroke:#7c3aed;stroke-dasharray:5 3}
.pv .e.pte.bad{stroke:#d92d20;stroke-width:2.6;stroke-dasharray:8 4}
.pv .e.map{stroke:#9333ea;stroke-width:2.4}
.pv .e.map.freed{stroke:#d92d20;stroke-width:3.4}
.pv .e.map.reused{stroke:#e8590c;stroke-width:3.4}
.pv .e.cache{stroke:#7c3aed;stroke-width:1.6}
.pv .e.tree{stroke:#64748b;stroke-width:1.4}
.pv .e.new{stroke-width:3.6}
.pv .hl{fill:none;stroke:#facc15;stroke-width:9;opacity:.55}
.pv .ah{fill:#64748b}.pv .ah.map{fill:#9333ea}.pv .ah.freed{fill:#d92d20}.pv .ah.reused{fill:#e8590c}
.pv .ah.pte{fill:#2563eb}.pv .ah.swp{fill:#7c3aed}.pv .ah.par{fill:#16a34a}.pv .ah.bad{fill:#d92d20}
</style>"#;

/// Arrowhead markers, one per edge colour, for those `out` refers to;
/// the `prefix` of their ids keeps several pictures in one HTML page apart.
/// Call it last: definitions may follow their use.
pub(crate) fn markers(out: &mut String, prefix: &str) {
    let mut defs = String::new();
    for (name, class) in [
        ("a", "ah"),
        ("map", "ah map"),
        ("freed", "ah freed"),
        ("reused", "ah reused"),
        ("pte", "ah pte"),
        ("swp", "ah swp"),
        ("par", "ah par"),
        ("bad", "ah bad"),
    ] {
        if !out.contains(&format!("url(#{prefix}{name})")) {
            continue;
        }
        let _ = write!(
            defs,
            r#"<marker id="{prefix}{name}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="11" markerHeight="11" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" class="{class}"/></marker>"#
        );
    }
    if !defs.is_empty() {
        out.push_str("<defs>");
        out.push_str(&defs);
        out.push_str("</defs>");
    }
}
