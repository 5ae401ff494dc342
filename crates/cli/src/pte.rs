//! `ptemu pte`: build and explain raw page-table entries.
//!
//! `swap` encodes a swap PTE; `decode` says what a raw entry means at a
//! level, in either of Linux's formats. Both are thin front ends over
//! pgtable's `encode_swap` and `decode`, the one place entries are
//! interpreted. Numbers are decimal or `0x` hexadecimal; anything else, or
//! a value out of range, is exit status 2 with a one-line message.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use pgtable::entry::{flag_names, pkey, reserved_bits_set};
use pgtable::{EntryFormat, EntryKind, Level, SwapPte, decode, encode_swap};
use serde_json::json;

/// Arguments of `ptemu pte`.
#[derive(Args, Debug)]
pub struct PteArgs {
    #[command(subcommand)]
    command: PteCommand,
}

#[derive(Subcommand, Debug)]
enum PteCommand {
    /// Encode a swap entry as a PTE and print it as 0x and 16 hex digits.
    Swap {
        /// Swap type (device index), 0..=31.
        #[arg(value_name = "TYPE")]
        swap_type: String,
        /// Swap offset (slot on the device).
        offset: String,
        /// Set the exclusive bit (the page was PG_anon_exclusive).
        #[arg(long)]
        exclusive: bool,
        /// Set the swap soft-dirty bit.
        #[arg(long)]
        soft_dirty: bool,
        /// Set the swap uffd-wp bit.
        #[arg(long)]
        uffd_wp: bool,
        /// Entry layout: l1tf (Linux since 2018) or classic (2.6.x).
        #[arg(long, value_enum, default_value_t = FormatArg::L1tf)]
        format: FormatArg,
    },
    /// Explain a raw entry: none, present, swap or protnone, and its fields.
    Decode {
        /// The raw 64-bit entry.
        value: String,
        /// Level of the table holding it: 1 PTE, 2 PDE, 3 PDPTE, 4 PML4E.
        #[arg(long, default_value = "1")]
        level: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Entry layout: l1tf (Linux since 2018) or classic (2.6.x).
        #[arg(long, value_enum, default_value_t = FormatArg::L1tf)]
        format: FormatArg,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FormatArg {
    /// Modern: type 63..59, inverted offset 58..9, PROT_NONE pfn inverted.
    L1tf,
    /// 2.6.x: type in bits 5..1, offset from bit 9, nothing inverted.
    Classic,
}

impl FormatArg {
    fn format(self) -> EntryFormat {
        match self {
            FormatArg::L1tf => EntryFormat::L1tf,
            FormatArg::Classic => EntryFormat::Classic,
        }
    }
    fn name(self) -> &'static str {
        match self {
            FormatArg::L1tf => "l1tf",
            FormatArg::Classic => "classic",
        }
    }
}

/// Parses a decimal or `0x`-hexadecimal unsigned 64-bit number.
fn parse_u64(what: &str, s: &str) -> Result<u64, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => t.replace('_', "").parse::<u64>(),
    };
    parsed.map_err(|e| format!("{what} {s:?} is not a number (decimal or 0x hex): {e}"))
}

/// Runs `ptemu pte`.
pub fn run(args: PteArgs) -> ExitCode {
    let result = match args.command {
        PteCommand::Swap { swap_type, offset, exclusive, soft_dirty, uffd_wp, format } => {
            swap(&swap_type, &offset, exclusive, soft_dirty, uffd_wp, format)
        }
        PteCommand::Decode { value, level, json, format } => {
            decode_cmd(&value, &level, json, format)
        }
    };
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("ptemu pte: {msg}");
            ExitCode::from(2)
        }
    }
}

fn swap(
    swap_type: &str,
    offset: &str,
    exclusive: bool,
    soft_dirty: bool,
    uffd_wp: bool,
    format: FormatArg,
) -> Result<String, String> {
    let t = parse_u64("swap type", swap_type)?;
    let t =
        u8::try_from(t).map_err(|_| format!("swap type {t} does not fit in 5 bits (max 31)"))?;
    let offset = parse_u64("swap offset", offset)?;
    let swp = SwapPte { swap_type: t, offset, exclusive, soft_dirty, uffd_wp };
    let v = encode_swap(swp, format.format()).map_err(|e| e.to_string())?;
    Ok(format!("{v:#018x}"))
}

fn level_of(s: &str) -> Result<Level, String> {
    let n = parse_u64("level", s)?;
    u8::try_from(n)
        .ok()
        .and_then(Level::from_number)
        .ok_or_else(|| format!("level {s} is outside 1..=4"))
}

fn size_name(level: Level) -> &'static str {
    match level {
        Level::Pt => "4 KiB page",
        Level::Pd => "2 MiB page",
        Level::Pdpt => "1 GiB page",
        Level::Pml4 => "512 GiB (not a valid leaf)",
    }
}

fn decode_cmd(
    value: &str,
    level: &str,
    as_json: bool,
    format: FormatArg,
) -> Result<String, String> {
    let raw = parse_u64("value", value)?;
    let level = level_of(level)?;
    let kind = decode(raw, level, format.format()).map_err(|e| e.to_string())?;
    let names = flag_names(raw, level);
    let mut obj = json!({
        "raw": format!("{raw:#018x}"),
        "level": level as u8,
        "format": format.name(),
        "kind": kind.name(),
    });
    let mut text = format!("{raw:#018x} at level {} ({} format): ", level as u8, format.name());
    match kind {
        EntryKind::None => text.push_str("none (nothing mapped)"),
        EntryKind::Present(p) => {
            let leaf = pgtable::entry::is_leaf(raw, level);
            // Reserved bits for the widest CPU (MAXPHYADDR 52, NXE on).
            let rsvd = reserved_bits_set(raw, level, 52, true);
            obj["pfn"] = json!(p.pfn.0);
            obj["flags"] = json!(names);
            obj["leaf"] = json!(leaf);
            obj["pkey"] = json!(pkey(raw));
            obj["reserved_bits"] = json!(format!("{rsvd:#x}"));
            let what = if leaf {
                format!("maps a {} at frame {:#x}", size_name(level), p.pfn.0)
            } else {
                format!("points at a level-{} table at frame {:#x}", level as u8 - 1, p.pfn.0)
            };
            text.push_str(&format!("present, {what}\n  flags: {}", names.join(" ")));
            if leaf && pkey(raw) != 0 {
                text.push_str(&format!("\n  protection key {}", pkey(raw)));
            }
            if rsvd != 0 {
                text.push_str(&format!("\n  reserved bits set: {rsvd:#x} (the CPU would fault)"));
            }
        }
        EntryKind::Swap(s) => {
            obj["type"] = json!(s.swap_type);
            obj["offset"] = json!(s.offset);
            obj["exclusive"] = json!(s.exclusive);
            obj["soft_dirty"] = json!(s.soft_dirty);
            obj["uffd_wp"] = json!(s.uffd_wp);
            text.push_str(&format!(
                "swap entry\n  type {} offset {:#x} exclusive {} soft-dirty {} uffd-wp {}",
                s.swap_type, s.offset, s.exclusive, s.soft_dirty, s.uffd_wp
            ));
        }
        EntryKind::ProtNone(p) => {
            obj["pfn"] = json!(p.pfn.0);
            obj["flags"] = json!(names);
            let how = match format {
                FormatArg::L1tf => "stored inverted",
                FormatArg::Classic => "stored as is",
            };
            text.push_str(&format!(
                "PROT_NONE mapping of frame {:#x} ({how})\n  flags: {}",
                p.pfn.0,
                names.join(" ")
            ));
        }
    }
    Ok(if as_json { obj.to_string() } else { text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("v", "0x10"), Ok(16));
        assert_eq!(parse_u64("v", "0XfF"), Ok(255));
        assert_eq!(parse_u64("v", "12_345"), Ok(12345));
        assert!(parse_u64("v", "").is_err());
        assert!(parse_u64("v", "0x").is_err());
        assert!(parse_u64("v", "18446744073709551616").is_err());
        assert!(parse_u64("v", "-1").is_err());
        assert!(parse_u64("v", "ten").is_err());
    }

    #[test]
    fn levels() {
        assert_eq!(level_of("2"), Ok(Level::Pd));
        assert!(level_of("0").is_err());
        assert!(level_of("5").is_err());
        assert!(level_of("256").is_err());
    }
}
