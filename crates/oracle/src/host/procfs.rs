//! Reading the kernel's page introspection files as root:
//! /proc/PID/pagemap, /proc/kpagecount, /proc/kpageflags, /proc/kpagecgroup.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::OracleError;
use crate::observe::PageObs;

/// The per-frame files, opened once per run.
#[derive(Debug)]
pub(crate) struct KPage {
    count: File,
    flags: File,
    cgroup: File,
}

fn open(path: &str) -> Result<File, OracleError> {
    File::open(path).map_err(|e| OracleError::io(path, e))
}

fn read_u64(file: &File, path: &Path, index: u64) -> Result<u64, OracleError> {
    let mut b = [0u8; 8];
    let off = index.checked_mul(8).ok_or_else(|| {
        OracleError::io(path, std::io::Error::other(format!("index {index:#x} out of range")))
    })?;
    file.read_exact_at(&mut b, off).map_err(|e| OracleError::io(path, e))?;
    Ok(u64::from_le_bytes(b))
}

impl KPage {
    pub(crate) fn open() -> Result<KPage, OracleError> {
        Ok(KPage {
            count: open("/proc/kpagecount")?,
            flags: open("/proc/kpageflags")?,
            cgroup: open("/proc/kpagecgroup")?,
        })
    }

    pub(crate) fn count(&self, pfn: u64) -> Result<u64, OracleError> {
        read_u64(&self.count, Path::new("/proc/kpagecount"), pfn)
    }

    pub(crate) fn flags(&self, pfn: u64) -> Result<u64, OracleError> {
        read_u64(&self.flags, Path::new("/proc/kpageflags"), pfn)
    }

    /// The inode number of the memory cgroup the frame is charged to.
    pub(crate) fn cgroup(&self, pfn: u64) -> Result<u64, OracleError> {
        read_u64(&self.cgroup, Path::new("/proc/kpagecgroup"), pfn)
    }
}

/// One process's pagemap.
pub(crate) struct Pagemap {
    file: File,
    path: PathBuf,
}

impl Pagemap {
    pub(crate) fn open(pid: i32) -> Result<Pagemap, OracleError> {
        let path = PathBuf::from(format!("/proc/{pid}/pagemap"));
        let file = File::open(&path).map_err(|e| OracleError::io(&path, e))?;
        Ok(Pagemap { file, path })
    }

    pub(crate) fn entry(&self, va: u64) -> Result<u64, OracleError> {
        read_u64(&self.file, &self.path, va / 4096)
    }
}

/// Reads one page of one process completely.
pub(crate) fn observe_page(pm: &Pagemap, kp: &KPage, va: u64) -> Result<PageObs, OracleError> {
    let mut obs = PageObs { pagemap: pm.entry(va)?, kpagecount: None, kpageflags: None };
    if let Some(pfn) = obs.pfn() {
        obs.kpagecount = Some(kp.count(pfn)?);
        obs.kpageflags = Some(kp.flags(pfn)?);
    }
    Ok(obs)
}
