//! /proc/PID/maps: a process's VMAs as Linux lists them (`show_map_vma`),
//! after splitting and merging, so that embedders and the oracle can
//! compare them with a real kernel's.

use crate::error::MmError;
use crate::machine::Machine;
use crate::process::Pid;
use crate::prot::Prot;

/// One line of /proc/PID/maps.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MapsEntry {
    /// vm_start.
    pub start: u64,
    /// vm_end.
    pub end: u64,
    /// The protection (the `rwx` of the perms column).
    pub prot: Prot,
    /// Whether the mapping is shared (`s`) rather than private (`p`);
    /// always private for ptemu's anonymous mappings.
    pub shared: bool,
    /// The offset column: `vm_pgoff << 12` for file mappings, 0 for
    /// anonymous ones (measured on the host: anonymous lines show
    /// `00000000` whatever their vm_pgoff).
    pub offset: u64,
    /// Device major and minor (0:0 for anonymous memory).
    pub dev: (u32, u32),
    /// Inode (0 for anonymous memory).
    pub inode: u64,
}

impl MapsEntry {
    /// The line of an anonymous private VMA (no file, offset 0).
    pub fn anon(v: &crate::process::Vma) -> Self {
        MapsEntry {
            start: v.start,
            end: v.end,
            prot: v.prot,
            shared: false,
            offset: 0,
            dev: (0, 0),
            inode: 0,
        }
    }

    /// The perms column: `r`/`w`/`x` or `-`, then `p` or `s` (`rw-p`).
    pub fn perms(&self) -> String {
        let mut s = String::with_capacity(4);
        s.push(if self.prot.readable() { 'r' } else { '-' });
        s.push(if self.prot.writable() { 'w' } else { '-' });
        s.push(if self.prot.executable() { 'x' } else { '-' });
        s.push(if self.shared { 's' } else { 'p' });
        s
    }
}

impl core::fmt::Display for MapsEntry {
    /// The line as the kernel prints it, up to the name (which anonymous
    /// mappings lack): `7f0000000000-7f0000002000 rw-p 00000000 00:00 0`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {}",
            self.start,
            self.end,
            self.perms(),
            self.offset,
            self.dev.0,
            self.dev.1,
            self.inode
        )
    }
}

impl Machine {
    /// The process's VMAs as /proc/PID/maps lists them, in address order.
    pub fn maps(&self, pid: Pid) -> Result<Vec<MapsEntry>, MmError> {
        Ok(self.proc(pid)?.vmas.values().map(MapsEntry::anon).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format_matches_proc() {
        let e = MapsEntry {
            start: 0x7f00_0000_0000,
            end: 0x7f00_0000_2000,
            prot: Prot::Rw,
            shared: false,
            offset: 0,
            dev: (0, 0),
            inode: 0,
        };
        // As the host printed it for such a mapping (trailing space aside).
        assert_eq!(e.to_string(), "7f0000000000-7f0000002000 rw-p 00000000 00:00 0");
        let low = MapsEntry { start: 0x1000, end: 0x2000, prot: Prot::None, ..e.clone() };
        assert_eq!(low.to_string(), "00001000-00002000 ---p 00000000 00:00 0");
        assert_eq!(MapsEntry { prot: Prot::Rx, ..e.clone() }.perms(), "r-xp");
        assert_eq!(MapsEntry { prot: Prot::Rwx, ..e.clone() }.perms(), "rwxp");
        assert_eq!(MapsEntry { prot: Prot::R, ..e }.perms(), "r--p");
    }
}
