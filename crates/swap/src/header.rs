//! The swap header in slot 0 of every device, in Linux's on-disk layout
//! (`union swap_header`, version 1, as mkswap writes it on x86-64), so that
//! a file-backed device is recognised by blkid, file(1) or swapon.
//!
//! Layout of the 4 KiB page: 1024 boot bytes (zero), then little-endian
//! u32 `version` (1), u32 `last_page` (the device's last slot), u32
//! `nr_badpages` (0), 16 bytes of UUID, 16 bytes of volume label, padding,
//! and the magic "SWAPSPACE2" in the last 10 bytes.

use phys::FrameBytes;

use crate::error::SwapError;

/// The magic at the end of the header page.
pub const SWAP_MAGIC: &[u8; 10] = b"SWAPSPACE2";
/// Offset of `version` (after the 1024 boot bytes).
const VERSION_OFFSET: usize = 1024;
/// Offset of `last_page`.
const LAST_PAGE_OFFSET: usize = 1028;
/// Offset of `nr_badpages`.
const NR_BADPAGES_OFFSET: usize = 1032;
/// Offset of `sws_uuid[16]`.
const UUID_OFFSET: usize = 1036;
/// Offset of `sws_volume[16]`.
const LABEL_OFFSET: usize = 1052;
/// The only header version Linux accepts.
const SWAP_VERSION: u32 = 1;

/// What a header says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SwapHeader {
    /// Last usable slot; the device has `last_page + 1` pages.
    pub last_page: u32,
    /// Volume UUID.
    pub uuid: [u8; 16],
    /// Volume label, NUL-padded.
    pub label: [u8; 16],
}

/// One step of splitmix64: a fixed mixing function, so the UUID is a
/// function of the device's type and size, not of time or chance.
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SwapHeader {
    /// The header mkswap would write for a device of `pages` pages, with a
    /// deterministic random-looking (version 4) UUID and the label
    /// "ptemu-swapN" for type N.
    pub fn new(swap_type: u8, pages: u64) -> Result<Self, SwapError> {
        if pages < 2 {
            return Err(SwapError::DeviceTooSmall { pages });
        }
        let last_page =
            u32::try_from(pages - 1).map_err(|_| SwapError::DeviceTooLarge { pages })?;
        let a = mix(u64::from(swap_type) << 56 ^ pages);
        let b = mix(a);
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&a.to_be_bytes());
        uuid[8..].copy_from_slice(&b.to_be_bytes());
        uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
        uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
        let mut label = [0u8; 16];
        let name = format!("ptemu-swap{swap_type}");
        label[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self { last_page, uuid, label })
    }

    /// The header page's bytes.
    pub fn to_page(&self) -> FrameBytes {
        let mut page = [0u8; 4096];
        page[VERSION_OFFSET..VERSION_OFFSET + 4].copy_from_slice(&SWAP_VERSION.to_le_bytes());
        page[LAST_PAGE_OFFSET..LAST_PAGE_OFFSET + 4].copy_from_slice(&self.last_page.to_le_bytes());
        page[NR_BADPAGES_OFFSET..NR_BADPAGES_OFFSET + 4].copy_from_slice(&0u32.to_le_bytes());
        page[UUID_OFFSET..UUID_OFFSET + 16].copy_from_slice(&self.uuid);
        page[LABEL_OFFSET..LABEL_OFFSET + 16].copy_from_slice(&self.label);
        page[4096 - SWAP_MAGIC.len()..].copy_from_slice(SWAP_MAGIC);
        page
    }

    /// Parses a header page, as swapon's `read_swap_header` checks it:
    /// the magic, version 1, and no bad pages (we do not model them).
    pub fn parse(page: &FrameBytes) -> Result<Self, SwapError> {
        if &page[4096 - SWAP_MAGIC.len()..] != SWAP_MAGIC {
            return Err(SwapError::BadHeader("no SWAPSPACE2 magic at the end of the first page"));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([page[o], page[o + 1], page[o + 2], page[o + 3]]);
        if u32_at(VERSION_OFFSET) != SWAP_VERSION {
            return Err(SwapError::BadHeader("header version is not 1"));
        }
        if u32_at(NR_BADPAGES_OFFSET) != 0 {
            return Err(SwapError::BadHeader("bad-page lists are not supported"));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&page[UUID_OFFSET..UUID_OFFSET + 16]);
        let mut label = [0u8; 16];
        label.copy_from_slice(&page[LABEL_OFFSET..LABEL_OFFSET + 16]);
        Ok(Self { last_page: u32_at(LAST_PAGE_OFFSET), uuid, label })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_page_layout() {
        let h = SwapHeader::new(2, 65536).unwrap();
        let page = h.to_page();
        assert_eq!(&page[4086..], b"SWAPSPACE2");
        assert_eq!(&page[1024..1036], &[1, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&page[1052..1064], b"ptemu-swap2\0");
        assert!(page[..1024].iter().all(|&b| b == 0));
        assert_eq!(page[1036 + 6] >> 4, 4);
        assert_eq!(SwapHeader::parse(&page).unwrap(), h);
        // Same device, same UUID; another type, another one.
        assert_eq!(SwapHeader::new(2, 65536).unwrap().uuid, h.uuid);
        assert_ne!(SwapHeader::new(3, 65536).unwrap().uuid, h.uuid);
    }

    #[test]
    fn bad_headers() {
        assert!(matches!(SwapHeader::new(0, 1), Err(SwapError::DeviceTooSmall { pages: 1 })));
        assert!(matches!(SwapHeader::new(0, (1 << 32) + 2), Err(SwapError::DeviceTooLarge { .. })));
        let mut page = SwapHeader::new(0, 8).unwrap().to_page();
        page[1024] = 2;
        assert!(matches!(SwapHeader::parse(&page), Err(SwapError::BadHeader(_))));
        assert!(matches!(SwapHeader::parse(&[0u8; 4096]), Err(SwapError::BadHeader(_))));
    }
}
