//! Graphviz DOT of a snapshot: the same nodes and edges as the rmap
//! picture, plus the page-table walks, for people who prefer `dot`.

use std::fmt::Write as _;

use mm::MappingView;

use crate::pgtable_svg::{entry_text, level_name};
use crate::snapshot::{AvState, PteTarget, Snapshot};

fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The snapshot as a Graphviz digraph (`dot -Tsvg` lays it out).
pub fn dot(s: &Snapshot, title: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "strict digraph ptemu {{");
    let _ = writeln!(o, "  label={};\n  labelloc=t;\n  rankdir=LR;\n  newrank=true;", q(title));
    let _ = writeln!(
        o,
        "  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\", fontsize=10, fillcolor=white];\n  edge [fontname=\"monospace\", fontsize=9];"
    );
    for pg in &s.pages {
        let bad = matches!(pg.mapping, MappingView::Freed { .. } | MappingView::Reused { .. });
        let _ = writeln!(
            o,
            "  {} [label={}, fillcolor={}, color={}];",
            q(&format!("page:{:#x}", pg.pfn)),
            q(&format!(
                "page {:#x}\nindex {:#x} mapcount {} refcount {}\n{}",
                pg.pfn,
                pg.index,
                pg.mapcount,
                pg.refcount,
                pg.flags.join(" ")
            )),
            if bad { "\"#fee4e2\"" } else { "\"#fffbeb\"" },
            if bad { "\"#d92d20\"" } else { "\"#d97706\"" }
        );
    }
    for sl in &s.slots {
        let _ = writeln!(
            o,
            "  {} [label={}, fillcolor=\"#f5f3ff\", color=\"#7c3aed\"];",
            q(&format!("slot:{}:{:#x}", sl.swap_type, sl.offset)),
            q(&format!(
                "swap slot {}:{:#x}\ncount {}{}",
                sl.swap_type,
                sl.offset,
                sl.count,
                if sl.has_cache { " SWAP_HAS_CACHE" } else { "" }
            ))
        );
        if let Some(p) = sl.cached {
            let _ = writeln!(
                o,
                "  {} -> {} [label=\"swap cache\", color=\"#7c3aed\"];",
                q(&format!("slot:{}:{:#x}", sl.swap_type, sl.offset)),
                q(&format!("page:{p:#x}"))
            );
        }
    }
    for pr in &s.procs {
        let _ = writeln!(o, "  subgraph {} {{", q(&format!("cluster_{}", pr.name)));
        let _ = writeln!(
            o,
            "    label={};\n    style=\"rounded,filled\";\n    fillcolor=\"#eef4ff\";\n    color=\"#3b6fd8\";",
            q(&format!("{} pid {} cr3 {:#x}", pr.name, pr.pid, pr.cr3))
        );
        for v in &pr.vmas {
            let _ = writeln!(
                o,
                "    {} [label={}];",
                q(&format!("vma:{}:{:#x}", pr.name, v.start)),
                q(&format!(
                    "vma {:#x}-{:#x} {}\nanon_vma {}",
                    v.start,
                    v.end,
                    v.prot,
                    v.anon_vma.as_deref().unwrap_or("-")
                ))
            );
            for t in &v.ptes {
                let _ = writeln!(
                    o,
                    "    {} [label={}, fillcolor={}];",
                    q(&format!("pte:{}:{:#x}", pr.name, t.addr)),
                    q(&format!(
                        "pte {:#x}\n{:#018x} {}{}",
                        t.addr,
                        t.raw,
                        t.kind,
                        if t.unreachable { "\nrmap-unreachable" } else { "" }
                    )),
                    if t.unreachable { "\"#fee4e2\"" } else { "\"#f8fafc\"" }
                );
                let _ = writeln!(
                    o,
                    "    {} -> {} [arrowhead=none, color=\"#8aa6e0\"];",
                    q(&format!("vma:{}:{:#x}", pr.name, v.start)),
                    q(&format!("pte:{}:{:#x}", pr.name, t.addr))
                );
            }
        }
        let _ = writeln!(o, "  }}");
        for v in &pr.vmas {
            for t in &v.ptes {
                let to = match t.target {
                    PteTarget::Page(p) => format!("page:{p:#x}"),
                    PteTarget::Slot(ty, off) => format!("slot:{ty}:{off:#x}"),
                    PteTarget::Nothing => continue,
                };
                let style = match (t.unreachable, t.target) {
                    (true, _) => {
                        "color=\"#d92d20\", style=dashed, penwidth=2.5, label=\"rmap-unreachable\""
                    }
                    (_, PteTarget::Slot(..)) => "color=\"#7c3aed\", style=dashed",
                    _ => "color=\"#2563eb\"",
                };
                let _ = writeln!(
                    o,
                    "  {} -> {} [{style}];",
                    q(&format!("pte:{}:{:#x}", pr.name, t.addr)),
                    q(&to)
                );
            }
            for a in &v.avcs {
                let _ = writeln!(
                    o,
                    "  {} [label={}, shape=ellipse, fillcolor=\"#f1f5f9\"];",
                    q(&format!("avc:{}", a.id)),
                    q(&a.id)
                );
                let _ = writeln!(
                    o,
                    "  {} -> {} [arrowhead=none, color=\"#64748b\"];\n  {} -> {} [color=\"#64748b\"];",
                    q(&format!("vma:{}:{:#x}", pr.name, v.start)),
                    q(&format!("avc:{}", a.id)),
                    q(&format!("avc:{}", a.id)),
                    q(&format!("av:{}", a.anon_vma))
                );
            }
        }
    }
    for a in &s.anon_vmas {
        let (label2, fill, color, style) = match &a.state {
            AvState::Live => (
                format!(
                    "root {} parent {}\nrefcount {} links {}",
                    a.root.as_deref().unwrap_or("self"),
                    a.parent.as_deref().unwrap_or("-"),
                    a.refcount,
                    a.links
                ),
                "#ecfdf3",
                "#16a34a",
                "rounded,filled",
            ),
            AvState::Freed { at } => {
                (format!("FREED\nby {at}"), "#fee4e2", "#d92d20", "rounded,filled,dashed,bold")
            }
            AvState::Reused { now, at } => (
                format!("FREED, slot reused by {now}\nby {at}"),
                "#fff4e5",
                "#e8590c",
                "rounded,filled,dashed,bold",
            ),
        };
        let _ = writeln!(
            o,
            "  {} [label={}, fillcolor=\"{fill}\", color=\"{color}\", style=\"{style}\"];",
            q(&format!("av:{}", a.id)),
            q(&format!("{}\n{label2}", a.label()))
        );
        if let Some(p) = &a.parent {
            let _ = writeln!(
                o,
                "  {} -> {} [label=parent, style=dashed, color=\"#16a34a\", constraint=false];",
                q(&format!("av:{}", a.id)),
                q(&format!("av:{p}"))
            );
        }
        if let Some(r) = &a.root {
            if a.parent.as_ref() != Some(r) {
                let _ = writeln!(
                    o,
                    "  {} -> {} [label=root, style=dotted, color=\"#15803d\", constraint=false];",
                    q(&format!("av:{}", a.id)),
                    q(&format!("av:{r}"))
                );
            }
        }
    }
    for pg in &s.pages {
        let (id, color, label) = match &pg.mapping {
            MappingView::Live { id } => (id, "#9333ea", "page->mapping"),
            MappingView::Freed { id, .. } => (id, "#d92d20", "page->mapping (FREED)"),
            MappingView::Reused { id, .. } => (id, "#e8590c", "page->mapping (FREED, reused)"),
            MappingView::NotAnon => continue,
        };
        let _ = writeln!(
            o,
            "  {} -> {} [label={}, color=\"{color}\", penwidth=2.5, constraint=false];",
            q(&format!("page:{:#x}", pg.pfn)),
            q(&format!("av:{id}")),
            q(label)
        );
    }
    // The page-table walks, one cluster per process.
    let mut last_proc = String::new();
    let mut open = false;
    for w in &s.walks {
        if w.proc != last_proc {
            if open {
                let _ = writeln!(o, "  }}");
            }
            let _ = writeln!(
                o,
                "  subgraph {} {{\n    label={};\n    color=\"#94a3b8\";",
                q(&format!("cluster_tables_{}", w.proc)),
                q(&format!("{} page tables", w.proc))
            );
            last_proc.clone_from(&w.proc);
            open = true;
        }
        let mut prev: Option<String> = None;
        for st in &w.steps {
            let id = format!("entry:{}:{:#x}:{}", w.proc, st.table, st.index);
            let _ = writeln!(
                o,
                "    {} [label={}, fillcolor=\"#f8fafc\"];",
                q(&id),
                q(&format!("{} @ {:#x}\n{}", level_name(st.level), st.table, entry_text(st)))
            );
            if let Some(p) = prev {
                let _ = writeln!(o, "    {} -> {};", q(&p), q(&id));
            }
            prev = Some(id);
        }
    }
    if open {
        let _ = writeln!(o, "  }}");
    }
    let _ = writeln!(o, "}}");
    o
}
