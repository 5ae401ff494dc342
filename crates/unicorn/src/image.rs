//! Guest programs: C sources built with the machine's C compiler into a
//! flat, position-dependent image (`guest/guest.ld`), and the loader that
//! maps one into a ptemu process.
//!
//! The same source also builds as a static freestanding host executable
//! (`-DPTEMU_NATIVE`), so a test can compare the emulated run with the
//! host kernel's.

use std::path::{Path, PathBuf};
use std::process::Command;

use mm::{Machine, Outcome, Pid, Prot};

use crate::error::UnicornError;

/// The image header's magic, "PTUIMAG1".
pub const MAGIC: u64 = 0x3147_414d_4955_5450;

/// A flat guest image: bytes to place at `base`, the entry point and the
/// layout the linker script recorded in the header.
#[derive(Clone, Debug)]
pub struct Image {
    /// The bytes, from `base`.
    pub bytes: Vec<u8>,
    /// Load address (the header's).
    pub base: u64,
    /// Entry point.
    pub entry: u64,
    /// End of text and read-only data (page aligned).
    pub text_end: u64,
    /// End of initialised data.
    pub data_end: u64,
    /// End of bss (page aligned).
    pub bss_end: u64,
}

/// Where guest sources and the linker script live.
pub fn guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest")
}

const CFLAGS: &[&str] = &[
    "-O2",
    "-ffreestanding",
    "-nostdlib",
    "-static",
    "-fno-pic",
    "-no-pie",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-builtin",
    "-fno-tree-loop-distribute-patterns",
    "-mgeneral-regs-only",
    "-Wall",
    "-Werror",
    "-Wl,--build-id=none",
];

fn run(cmd: &mut Command, what: &str) -> Result<(), UnicornError> {
    let out = cmd.output().map_err(|e| UnicornError::Build {
        what: what.to_string(),
        detail: format!("cannot run {:?}: {e}", cmd.get_program()),
    })?;
    if !out.status.success() {
        return Err(UnicornError::Build {
            what: what.to_string(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Builds `src` (a C file including `rt.h`) into `out_dir`: the flat
/// image for ptemu-unicorn, and, with `native`, a host executable too.
/// Returns (image path, native executable path).
pub fn build(
    src: &Path,
    out_dir: &Path,
    native: bool,
) -> Result<(PathBuf, Option<PathBuf>), UnicornError> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let objcopy = std::env::var("OBJCOPY").unwrap_or_else(|_| "objcopy".into());
    let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("guest").to_string();
    std::fs::create_dir_all(out_dir)
        .map_err(|err| UnicornError::Io { path: out_dir.display().to_string(), err })?;
    let elf = out_dir.join(format!("{stem}.guest.elf"));
    let bin = out_dir.join(format!("{stem}.bin"));
    let inc = guest_dir();
    run(
        Command::new(&cc)
            .args(CFLAGS)
            .arg("-I")
            .arg(&inc)
            .arg("-T")
            .arg(inc.join("guest.ld"))
            .arg("-o")
            .arg(&elf)
            .arg(src),
        &stem,
    )?;
    run(Command::new(&objcopy).args(["-O", "binary"]).arg(&elf).arg(&bin), &stem)?;
    let host = if native {
        let exe = out_dir.join(format!("{stem}.native"));
        run(
            Command::new(&cc)
                .args(CFLAGS)
                .arg("-DPTEMU_NATIVE")
                .arg("-I")
                .arg(&inc)
                .arg("-o")
                .arg(&exe)
                .arg(src),
            &stem,
        )?;
        Some(exe)
    } else {
        None
    };
    Ok((bin, host))
}

impl Image {
    /// Reads a flat image and checks its header.
    pub fn open(path: &Path) -> Result<Self, UnicornError> {
        let bytes = std::fs::read(path)
            .map_err(|err| UnicornError::Io { path: path.display().to_string(), err })?;
        Self::parse(bytes)
            .map_err(|what| UnicornError::Image { path: path.display().to_string(), what })
    }

    /// Checks the header of a flat image.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        let word = |i: usize| -> Result<u64, String> {
            bytes
                .get(i * 8..i * 8 + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
                .ok_or_else(|| format!("{} bytes: too short for the header", bytes.len()))
        };
        if word(0)? != MAGIC {
            return Err(format!("bad magic {:#x} (not built with guest.ld)", word(0)?));
        }
        let base = 0x40_0000;
        let (entry, text_end, data_end, bss_end) = (word(1)?, word(2)?, word(3)?, word(4)?);
        let len = bytes.len() as u64;
        let ok = base < text_end
            && text_end <= data_end
            && data_end <= bss_end
            && (base..text_end).contains(&entry)
            && text_end % 4096 == 0
            && bss_end % 4096 == 0
            && base + len <= data_end.max(text_end)
            && bss_end - base <= 1 << 30;
        if !ok {
            return Err(format!(
                "inconsistent layout: entry {entry:#x} text end {text_end:#x} data end {data_end:#x} bss end {bss_end:#x}, {len} bytes"
            ));
        }
        Ok(Self { bytes, base, entry, text_end, data_end, bss_end })
    }

    /// Maps the image into `pid` as execve's loader would: text read-write
    /// while it is copied in, then read-execute (mprotect); data and bss
    /// read-write. Every byte goes in through user writes, faulting pages
    /// in as the kernel's copy would.
    pub fn load(&self, m: &mut Machine, pid: Pid) -> Result<(), UnicornError> {
        let text_len = self.text_end - self.base;
        let sys = |r: Outcome<mm::SysResult>, what: &str| match r {
            Outcome::Done(Ok(())) => Ok(()),
            o => Err(UnicornError::Kernel(format!("loading the image: {what}: {o:?}"))),
        };
        sys(m.mmap(pid, self.base, text_len, Prot::Rw)?, "mmap text")?;
        let split = (text_len as usize).min(self.bytes.len());
        let write = |m: &mut Machine, va: u64, b: &[u8]| -> Result<(), UnicornError> {
            match m.write_bytes(pid, va, b)? {
                Outcome::Done(()) => Ok(()),
                o => Err(UnicornError::Kernel(format!("loading the image: {o:?}"))),
            }
        };
        write(m, self.base, &self.bytes[..split])?;
        sys(m.mprotect(pid, self.base, text_len, Prot::Rx)?, "mprotect text")?;
        if self.bss_end > self.text_end {
            sys(m.mmap(pid, self.text_end, self.bss_end - self.text_end, Prot::Rw)?, "mmap data")?;
            if self.bytes.len() > split {
                write(m, self.text_end, &self.bytes[split..])?;
            }
        }
        Ok(())
    }
}
