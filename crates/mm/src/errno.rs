//! Linux's errno values, as the emulated system calls return them.
//!
//! mmap, munmap, mprotect and madvise fail the way Linux's do: with an
//! errno and whatever partial effect Linux leaves (see
//! [`crate::Machine::mprotect`]). That failure is the call's result, not an
//! error of the caller's: the machine goes on, as the program would.
//! [`SysResult`] is that result; [`crate::MmError`] stays for what no
//! system call could be asked (a process that does not exist) and for
//! internal bugs.

/// An errno value of x86-64 Linux (`asm-generic/errno-base.h` and
/// `errno.h`), spelled as glibc's `strerrorname_np` spells it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[allow(clippy::upper_case_acronyms)]
pub enum Errno {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory.
    ENOENT = 2,
    /// No such process.
    ESRCH = 3,
    /// Interrupted system call.
    EINTR = 4,
    /// Input/output error.
    EIO = 5,
    /// Bad file descriptor.
    EBADF = 9,
    /// Resource temporarily unavailable.
    EAGAIN = 11,
    /// Cannot allocate memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address.
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// File exists.
    EEXIST = 17,
    /// No such device.
    ENODEV = 19,
    /// Invalid argument.
    EINVAL = 22,
    /// Too many open files in system.
    ENFILE = 23,
    /// Too many open files.
    EMFILE = 24,
    /// Text file busy.
    ETXTBSY = 26,
    /// File too large.
    EFBIG = 27,
    /// No space left on device.
    ENOSPC = 28,
    /// Function not implemented.
    ENOSYS = 38,
    /// Value too large for defined data type.
    EOVERFLOW = 75,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Memory page has hardware error.
    EHWPOISON = 133,
}

impl Errno {
    /// Every value, in number order.
    pub const ALL: [Errno; 23] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::ESRCH,
        Errno::EINTR,
        Errno::EIO,
        Errno::EBADF,
        Errno::EAGAIN,
        Errno::ENOMEM,
        Errno::EACCES,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::ENODEV,
        Errno::EINVAL,
        Errno::ENFILE,
        Errno::EMFILE,
        Errno::ETXTBSY,
        Errno::EFBIG,
        Errno::ENOSPC,
        Errno::ENOSYS,
        Errno::EOVERFLOW,
        Errno::EOPNOTSUPP,
        Errno::EHWPOISON,
    ];

    /// The number (what `errno` holds, and minus the raw syscall return).
    pub const fn raw(self) -> i32 {
        self as i32
    }

    /// The value with this number, if ptemu knows it.
    pub fn from_raw(n: i32) -> Option<Errno> {
        Self::ALL.into_iter().find(|e| e.raw() == n)
    }

    /// The name, as `strerrorname_np` spells it (`ENOMEM`).
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::ESRCH => "ESRCH",
            Errno::EINTR => "EINTR",
            Errno::EIO => "EIO",
            Errno::EBADF => "EBADF",
            Errno::EAGAIN => "EAGAIN",
            Errno::ENOMEM => "ENOMEM",
            Errno::EACCES => "EACCES",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::ENODEV => "ENODEV",
            Errno::EINVAL => "EINVAL",
            Errno::ENFILE => "ENFILE",
            Errno::EMFILE => "EMFILE",
            Errno::ETXTBSY => "ETXTBSY",
            Errno::EFBIG => "EFBIG",
            Errno::ENOSPC => "ENOSPC",
            Errno::ENOSYS => "ENOSYS",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EHWPOISON => "EHWPOISON",
        }
    }

    /// The value with this name (`ENOMEM`), if ptemu knows it.
    pub fn from_name(s: &str) -> Option<Errno> {
        Self::ALL.into_iter().find(|e| e.name() == s)
    }

    /// glibc's `strerror` text.
    pub const fn message(self) -> &'static str {
        match self {
            Errno::EPERM => "Operation not permitted",
            Errno::ENOENT => "No such file or directory",
            Errno::ESRCH => "No such process",
            Errno::EINTR => "Interrupted system call",
            Errno::EIO => "Input/output error",
            Errno::EBADF => "Bad file descriptor",
            Errno::EAGAIN => "Resource temporarily unavailable",
            Errno::ENOMEM => "Cannot allocate memory",
            Errno::EACCES => "Permission denied",
            Errno::EFAULT => "Bad address",
            Errno::EBUSY => "Device or resource busy",
            Errno::EEXIST => "File exists",
            Errno::ENODEV => "No such device",
            Errno::EINVAL => "Invalid argument",
            Errno::ENFILE => "Too many open files in system",
            Errno::EMFILE => "Too many open files",
            Errno::ETXTBSY => "Text file busy",
            Errno::EFBIG => "File too large",
            Errno::ENOSPC => "No space left on device",
            Errno::ENOSYS => "Function not implemented",
            Errno::EOVERFLOW => "Value too large for defined data type",
            Errno::EOPNOTSUPP => "Operation not supported",
            Errno::EHWPOISON => "Memory page has hardware error",
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.message())
    }
}

impl core::str::FromStr for Errno {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Errno::from_name(s).ok_or_else(|| format!("unknown errno name '{s}'"))
    }
}

/// What an emulated system call returned: 0, or an errno.
pub type SysResult = Result<(), Errno>;

/// The result as `strace` would end its line: `0` or `-1 ENOMEM`.
pub fn sys_result_text(r: SysResult) -> String {
    match r {
        Ok(()) => "0".to_string(),
        Err(e) => format!("-1 {}", e.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        // x86-64 values from include/uapi/asm-generic/errno{,-base}.h.
        assert_eq!(Errno::ENOMEM.raw(), 12);
        assert_eq!(Errno::EINVAL.raw(), 22);
        assert_eq!(Errno::EEXIST.raw(), 17);
        assert_eq!(Errno::EOVERFLOW.raw(), 75);
        for e in Errno::ALL {
            assert_eq!(Errno::from_raw(e.raw()), Some(e));
            assert_eq!(Errno::from_name(e.name()), Some(e));
        }
        assert!(Errno::ALL.windows(2).all(|w| w[0].raw() < w[1].raw()));
        assert_eq!(Errno::from_name("enomem"), None);
        assert_eq!(Errno::from_raw(0), None);
        assert_eq!(Errno::ENOMEM.to_string(), "ENOMEM (Cannot allocate memory)");
    }
}
