//! Operations back to the fixture language: the text `ptemu run` parses
//! into the same operation (tested by a round trip through the parser).

use scenario::ast::{Op, Pos, Spanned, SysResult};

fn size(len: u64) -> String {
    if len % (1 << 30) == 0 {
        format!("{}G", len >> 30)
    } else if len % (1 << 20) == 0 {
        format!("{}M", len >> 20)
    } else if len % (1 << 10) == 0 {
        format!("{}K", len >> 10)
    } else {
        format!("{len:#x}")
    }
}

/// ` = 0` or ` = ENOMEM`: a system call's result as a scenario states it.
pub fn result_text(r: &SysResult) -> String {
    match r {
        Ok(()) => " = 0".to_string(),
        Err(e) => format!(" = {}", e.name()),
    }
}

/// The statement for `op`.
pub fn op_text(op: &Op) -> String {
    let stated = match op {
        Op::Mmap { result, .. }
        | Op::Munmap { result, .. }
        | Op::Mprotect { result, .. }
        | Op::Madvise { result, .. } => result.as_ref().map(|r| result_text(&r.value)),
        _ => None,
    };
    let mut s = bare_text(op);
    if let Some(r) = stated {
        s.push_str(&r);
    }
    s
}

fn bare_text(op: &Op) -> String {
    match op {
        Op::Spawn { proc } => format!("spawn {}", proc.value),
        Op::Mmap { proc, addr, len, prot, .. } => {
            format!(
                "{} mmap {:#x} {} {}",
                proc.value,
                addr.value,
                size(len.value),
                prot.value.as_str()
            )
        }
        Op::Munmap { proc, addr, len, .. } => {
            format!("{} munmap {:#x} {}", proc.value, addr.value, size(len.value))
        }
        Op::Mprotect { proc, addr, len, prot, .. } => format!(
            "{} mprotect {:#x} {} {}",
            proc.value,
            addr.value,
            size(len.value),
            prot.value.as_str()
        ),
        Op::Madvise { proc, addr, len, .. } => {
            format!("{} madvise {:#x} {} dontneed", proc.value, addr.value, size(len.value))
        }
        Op::Write { proc, addr, value } => match value {
            Some(v) => format!("{} write {:#x} {:#04x}", proc.value, addr.value, v.value),
            None => format!("{} write {:#x}", proc.value, addr.value),
        },
        Op::Read { proc, addr, expect } => match expect {
            Some(v) => format!("{} read {:#x} = {:#04x}", proc.value, addr.value, v.value),
            None => format!("{} read {:#x}", proc.value, addr.value),
        },
        Op::Fork { parent, child } => format!("{} fork {}", parent.value, child.value),
        Op::Exit { proc } => format!("{} exit", proc.value),
        Op::Execve { proc } => format!("{} execve", proc.value),
        Op::Reclaim { proc, addr, len, keep_cache } => {
            let mut s = format!("reclaim {} {:#x}", proc.value, addr.value);
            if let Some(l) = len {
                s.push(' ');
                s.push_str(&size(l.value));
            }
            if *keep_cache {
                s.push_str(" keep-cache");
            }
            s
        }
        Op::RmapWalk { proc, addr } => format!("rmap-walk {} {:#x}", proc.value, addr.value),
        Op::RcuGracePeriod => "rcu-grace-period".to_string(),
        Op::Dump { proc, addr } => match addr {
            Some(a) => format!("dump {} {:#x}", proc.value, a.value),
            None => format!("dump {}", proc.value),
        },
    }
}

/// A value with no position (generated, not parsed).
pub fn sp<T>(value: T) -> Spanned<T> {
    Spanned { value, pos: Pos::default() }
}

/// A size in the fixture language's spelling (`4M`, `16K`).
pub fn size_text(len: u64) -> String {
    size(len)
}
