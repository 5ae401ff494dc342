//! A deterministic text view of the rmap graph, for scenario dumps, the
//! CLI and test failure messages.
//!
//! Format, one line per live anon_vma in display-id order, then one per
//! VMA in id order:
//!
//! ```text
//! av2 root av1 parent av1 refcount 0 degree 0 children 0 active 0 links vma2:avc3[0x7f0000000-0x7f000000f]
//! vma2 anon_vma av2 chain av2,av1
//! ```
//!
//! A stale root or parent is shown with a `!` after its display id.

use std::fmt::Write;

use crate::handle::AnonVmaHandle;
use crate::rmap::Rmap;

impl Rmap {
    fn name_of(&self, h: AnonVmaHandle) -> String {
        match self.display_id(h) {
            Ok(id) if self.is_live(h) => id.to_string(),
            Ok(id) => format!("{id}!"),
            Err(_) => format!("?{h}"),
        }
    }

    /// The whole graph as text (see the module documentation).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (_, av) in self.live_anon_vmas() {
            let parent = av.parent.map_or_else(|| "-".to_string(), |p| self.name_of(p));
            let _ = write!(
                out,
                "{} root {} parent {} refcount {} degree {} children {} active {} links",
                av.id,
                self.name_of(av.root),
                parent,
                av.refcount,
                av.degree,
                av.num_children,
                av.num_active_vmas
            );
            for k in av.links() {
                let _ =
                    write!(out, " {}:{}[{:#x}-{:#x}]", k.vma, k.avc, k.pgoff_start, k.pgoff_last);
            }
            out.push('\n');
        }
        for id in self.vma_ids() {
            let Ok(rec) = self.vma(id) else { continue };
            let own = rec.anon_vma.map_or_else(|| "-".to_string(), |h| self.name_of(h));
            let chain: Vec<String> = self
                .vma_chain(id)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, h)| self.name_of(h))
                .collect();
            let _ = writeln!(out, "{id} anon_vma {own} chain {}", chain.join(","));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::{Era, Rmap, VmaId, VmaRange};

    #[test]
    fn dump_shows_the_graph() {
        let mut r = Rmap::new(Era::V6_18);
        r.vma_register(VmaId(1), VmaRange::new(0x10000, 0x10, 2).expect("range"))
            .expect("register");
        r.anon_vma_prepare(VmaId(1), &[]).expect("prepare");
        r.anon_vma_fork(VmaId(2), VmaId(1)).expect("fork");
        assert_eq!(
            r.dump(),
            "av1 root av1 parent - refcount 1 degree 0 children 2 active 1 links vma1:avc1[0x10-0x11] vma2:avc2[0x10-0x11]\n\
             av2 root av1 parent av1 refcount 0 degree 0 children 0 active 1 links vma2:avc3[0x10-0x11]\n\
             vma1 anon_vma av1 chain av1\n\
             vma2 anon_vma av2 chain av2,av1\n"
        );
    }
}
