//! What one side (the host kernel or ptemu) shows after a step, in the
//! encodings of /proc/PID/pagemap, /proc/kpagecount and /proc/kpageflags,
//! and the fields the oracle derives from them.
//!
//! Frame numbers and swap offsets are never compared as numbers: the two
//! machines allocate differently. They become classes ("same frame as",
//! "same slot as"), each named by its first member in (process, address)
//! order, so two sides agree exactly when they group the same entries.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::ProcId;

/// pagemap bit 63: page present.
pub const PM_PRESENT: u64 = 1 << 63;
/// pagemap bit 62: page swapped.
pub const PM_SWAPPED: u64 = 1 << 62;
/// pagemap bit 56: page exclusively mapped (present pages only).
pub const PM_EXCLUSIVE: u64 = 1 << 56;
/// pagemap bits 0..54: the frame number, or the swap type and offset.
pub const PM_PFN_MASK: u64 = (1 << 55) - 1;
/// kpageflags bit 12: KPF_ANON.
pub const KPF_ANON: u64 = 1 << 12;
/// kpageflags bit 13: KPF_SWAPCACHE.
pub const KPF_SWAPCACHE: u64 = 1 << 13;
/// kpageflags bit 24: KPF_ZERO_PAGE.
pub const KPF_ZERO_PAGE: u64 = 1 << 24;
/// kpageflags bit 34: KPF_MAPPEDTODISK, the raw bit that holds
/// PG_anon_exclusive on anonymous pages (6.x aliases the two flags).
pub const KPF_MAPPEDTODISK: u64 = 1 << 34;

/// One (process, page) as read after a step.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize)]
pub struct PageObs {
    /// The raw /proc/PID/pagemap entry.
    pub pagemap: u64,
    /// /proc/kpagecount of the frame, when present.
    pub kpagecount: Option<u64>,
    /// /proc/kpageflags of the frame, when present.
    pub kpageflags: Option<u64>,
}

impl PageObs {
    fn present(&self) -> bool {
        self.pagemap & PM_PRESENT != 0
    }

    fn swapped(&self) -> bool {
        self.pagemap & PM_SWAPPED != 0 && !self.present()
    }

    /// (type, offset) of a swapped entry (pagemap: type in 0..4, offset above).
    pub fn swap_entry(&self) -> Option<(u64, u64)> {
        self.swapped().then(|| {
            let v = self.pagemap & PM_PFN_MASK;
            (v & 0x1f, v >> 5)
        })
    }

    /// The frame number of a present entry.
    pub fn pfn(&self) -> Option<u64> {
        self.present().then_some(self.pagemap & PM_PFN_MASK)
    }
}

/// What an access step did.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct AccessOutcome {
    /// The access faulted with SIGSEGV.
    pub segv: bool,
    /// The byte a successful read returned.
    pub value: Option<u8>,
}

/// One VMA as /proc/PID/maps lists it: start, end and the perms column.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct MapLine {
    /// vm_start.
    pub start: u64,
    /// vm_end.
    pub end: u64,
    /// `rw-p` and the like.
    pub perms: String,
}

impl std::fmt::Display for MapLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}-{:#x} {}", self.start, self.end, self.perms)
    }
}

/// Everything read after one step.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct StepObs {
    /// For a read or write: what the access did.
    pub access: Option<AccessOutcome>,
    /// For mmap, munmap, mprotect and madvise: 0, or the errno it failed with.
    pub result: Option<i32>,
    /// Per live process: its VMAs inside the scenario's mappings (the
    /// worker's own mappings left out), in address order.
    pub maps: BTreeMap<ProcId, Vec<MapLine>>,
    /// Every observed (process, page).
    pub pages: BTreeMap<(ProcId, u64), PageObs>,
}

/// A compared field.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Field {
    /// pagemap bit 63.
    Present,
    /// pagemap bit 62.
    Swapped,
    /// The swap entry's type.
    SwapType,
    /// Which entries hold the same swap slot.
    SwapSlot,
    /// pagemap bit 56.
    Exclusive,
    /// /proc/kpagecount.
    Mapcount,
    /// KPF_ANON.
    Anon,
    /// KPF_SWAPCACHE.
    Swapcache,
    /// KPF_ZERO_PAGE.
    ZeroPage,
    /// PG_anon_exclusive (kpageflags bit 34 on an anonymous page).
    AnonExclusive,
    /// Which entries map the same frame.
    Frame,
    /// Whether the access step faulted with SIGSEGV.
    Segv,
    /// The byte a read returned.
    ReadValue,
    /// A system call's result: 0 or the errno's name.
    Result,
    /// A process's VMAs, as /proc/PID/maps lists them.
    Maps,
}

impl Field {
    /// Every field, in report order.
    pub const ALL: [Field; 15] = [
        Field::Present,
        Field::Swapped,
        Field::SwapType,
        Field::SwapSlot,
        Field::Exclusive,
        Field::Mapcount,
        Field::Anon,
        Field::Swapcache,
        Field::ZeroPage,
        Field::AnonExclusive,
        Field::Frame,
        Field::Segv,
        Field::ReadValue,
        Field::Result,
        Field::Maps,
    ];

    /// The field's name in reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Present => "present",
            Field::Swapped => "swapped",
            Field::SwapType => "swap-type",
            Field::SwapSlot => "swap-slot",
            Field::Exclusive => "exclusive",
            Field::Mapcount => "mapcount",
            Field::Anon => "anon",
            Field::Swapcache => "swapcache",
            Field::ZeroPage => "zero-page",
            Field::AnonExclusive => "anon-exclusive",
            Field::Frame => "frame",
            Field::Segv => "segv",
            Field::ReadValue => "read-value",
            Field::Result => "result",
            Field::Maps => "maps",
        }
    }
}

/// A field's value as compared and printed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// yes/no.
    Bool(bool),
    /// A count, a swap type or a byte.
    Num(u64),
    /// A class named by its first member, e.g. `A:0x7f0000000000`.
    Class(String),
    /// Text shown as is (an errno name, a maps listing).
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => f.write_str(if *b { "yes" } else { "no" }),
            Value::Num(n) => write!(f, "{n}"),
            Value::Class(c) => write!(f, "same as {c}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// Where a field was read: a page, or the step itself (access outcome).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Place {
    /// The step's own access (or system call).
    Access,
    /// One process as a whole (its maps).
    Process(ProcId),
    /// One (process, page).
    Page(ProcId, u64),
}

/// Derives every applicable field of a step's observation.
///
/// A field that does not apply (mapcount of a swapped entry, swap type of a
/// present one) is simply absent; `names` turns process ids into the names
/// used for class labels.
pub fn derive_fields(
    obs: &StepObs,
    names: &dyn Fn(ProcId) -> String,
) -> BTreeMap<(Place, Field), Value> {
    let mut out = BTreeMap::new();
    if let Some(a) = obs.access {
        out.insert((Place::Access, Field::Segv), Value::Bool(a.segv));
        if let Some(v) = a.value {
            out.insert((Place::Access, Field::ReadValue), Value::Num(u64::from(v)));
        }
    }
    if let Some(r) = obs.result {
        out.insert((Place::Access, Field::Result), Value::Text(errno_name(r)));
    }
    for (&p, lines) in &obs.maps {
        let text = lines.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ");
        out.insert((Place::Process(p), Field::Maps), Value::Text(text));
    }
    // First member of each frame and slot class, in (process, address) order;
    // BTreeMap iteration gives exactly that order.
    let mut frame_class: BTreeMap<u64, String> = BTreeMap::new();
    let mut slot_class: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for (&(proc, va), page) in &obs.pages {
        let label = format!("{}:{:#x}", names(proc), va);
        if let Some(pfn) = page.pfn() {
            frame_class.entry(pfn).or_insert_with(|| label.clone());
        }
        if let Some(entry) = page.swap_entry() {
            slot_class.entry(entry).or_insert(label);
        }
    }
    for (&(proc, va), page) in &obs.pages {
        let place = Place::Page(proc, va);
        let present = page.pfn().is_some();
        out.insert((place, Field::Present), Value::Bool(present));
        out.insert((place, Field::Swapped), Value::Bool(page.swap_entry().is_some()));
        if let Some(entry @ (ty, _)) = page.swap_entry() {
            out.insert((place, Field::SwapType), Value::Num(ty));
            if let Some(c) = slot_class.get(&entry) {
                out.insert((place, Field::SwapSlot), Value::Class(c.clone()));
            }
        }
        let Some(pfn) = page.pfn() else { continue };
        out.insert((place, Field::Exclusive), Value::Bool(page.pagemap & PM_EXCLUSIVE != 0));
        if let Some(c) = frame_class.get(&pfn) {
            out.insert((place, Field::Frame), Value::Class(c.clone()));
        }
        if let Some(n) = page.kpagecount {
            out.insert((place, Field::Mapcount), Value::Num(n));
        }
        if let Some(flags) = page.kpageflags {
            let anon = flags & KPF_ANON != 0;
            out.insert((place, Field::Anon), Value::Bool(anon));
            out.insert((place, Field::Swapcache), Value::Bool(flags & KPF_SWAPCACHE != 0));
            out.insert((place, Field::ZeroPage), Value::Bool(flags & KPF_ZERO_PAGE != 0));
            if anon {
                out.insert(
                    (place, Field::AnonExclusive),
                    Value::Bool(flags & KPF_MAPPEDTODISK != 0),
                );
            }
        }
    }
    out
}

/// A system call's result as the scenario language writes it: `0`, or the
/// errno's name as strerrorname_np spells it (the number for one the
/// memory calls never return).
pub fn errno_name(e: i32) -> String {
    let name = match e {
        0 => "0",
        libc::EPERM => "EPERM",
        libc::EINTR => "EINTR",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EHWPOISON => "EHWPOISON",
        other => return format!("errno {other}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(p: ProcId) -> String {
        ["A", "B", "C"].get(p).map_or("?".to_string(), |s| s.to_string())
    }

    #[test]
    fn classes_are_named_by_first_member() {
        let mut obs = StepObs::default();
        let present = |pfn: u64| PageObs {
            pagemap: PM_PRESENT | pfn,
            kpagecount: Some(2),
            kpageflags: Some(KPF_ANON),
        };
        obs.pages.insert((1, 0x2000), present(77));
        obs.pages.insert((0, 0x2000), present(77));
        obs.pages.insert((0, 0x3000), present(78));
        // Swapped, type 0 offset 5, twice; type 1 offset 5 once.
        obs.pages
            .insert((0, 0x4000), PageObs { pagemap: PM_SWAPPED | (5 << 5), ..Default::default() });
        obs.pages
            .insert((2, 0x4000), PageObs { pagemap: PM_SWAPPED | (5 << 5), ..Default::default() });
        obs.pages.insert(
            (1, 0x4000),
            PageObs { pagemap: PM_SWAPPED | (5 << 5) | 1, ..Default::default() },
        );
        let f = derive_fields(&obs, &name);
        let class = |p, va, field| f.get(&(Place::Page(p, va), field)).cloned();
        assert_eq!(class(1, 0x2000, Field::Frame), Some(Value::Class("A:0x2000".into())));
        assert_eq!(class(0, 0x3000, Field::Frame), Some(Value::Class("A:0x3000".into())));
        assert_eq!(class(2, 0x4000, Field::SwapSlot), Some(Value::Class("A:0x4000".into())));
        assert_eq!(class(1, 0x4000, Field::SwapSlot), Some(Value::Class("B:0x4000".into())));
        assert_eq!(class(1, 0x4000, Field::SwapType), Some(Value::Num(1)));
        assert_eq!(class(1, 0x4000, Field::Mapcount), None);
        assert_eq!(class(0, 0x2000, Field::AnonExclusive), Some(Value::Bool(false)));
        assert_eq!(class(0, 0x2000, Field::Exclusive), Some(Value::Bool(false)));
    }

    #[test]
    fn none_entry_has_only_presence_fields() {
        let mut obs = StepObs::default();
        obs.pages.insert((0, 0x1000), PageObs::default());
        obs.access = Some(AccessOutcome { segv: true, value: None });
        let f = derive_fields(&obs, &name);
        assert_eq!(f.len(), 3);
        assert_eq!(f.get(&(Place::Access, Field::Segv)), Some(&Value::Bool(true)));
        assert_eq!(f.get(&(Place::Page(0, 0x1000), Field::Present)), Some(&Value::Bool(false)));
    }
}
