//! **[H]** Map a request (size, alignment) to the jemalloc size class it is served from.
//!
//! Pure arithmetic, no table: this runs on every allocation and every free. The formulas
//! follow jemalloc 5.3's size-class scheme (`include/jemalloc/internal/sc.h`, `sz.h`:
//! `sz_size2index_compute`, `sz_index2size_compute`, `sz_sa2u`) for the parameters
//! `tikv-jemalloc-sys` builds with on 64-bit Linux: a 16-byte quantum, one 8-byte tiny
//! class, four classes per doubling, 4 KiB pages. The test
//! `memsentry/tests/size_class.rs` checks every size up to 64 KiB, every alignment up to
//! 4 KiB and a sample of large sizes against jemalloc's own `nallocx`.
//!
//! The classes on x86-64 start 8, 16, 32, 48, 64, 80, 96, 112, 128, then four per
//! doubling (160, 192, 224, 256, 320, …) up to 14 KiB: jemalloc's *small* classes,
//! served from slabs. Above that, requests are *large* (page runs), and the jemalloc that
//! tikv-jemalloc-sys 0.7 builds (5.3.1) runs with `opt.disable_large_size_classes` on by
//! default: a large block is the request rounded up to whole pages (at least 16 KiB), not
//! to a size class. memsentry still *buckets* large requests by jemalloc's nominal classes
//! (four per doubling), so the per-class table stays bounded, and counts their real,
//! page-rounded size separately.

/// log2 of jemalloc's quantum (`LG_QUANTUM`): 16 bytes on every 64-bit target
/// tikv-jemalloc-sys supports.
const LG_QUANTUM: u32 = 4;
/// log2 of the smallest (tiny) class, `LG_TINY_MIN` = 3: an 8-byte class.
const LG_TINY_MIN: u32 = 3;
/// Number of tiny classes below the quantum (`SC_NTINY`).
const NTINY: usize = (LG_QUANTUM - LG_TINY_MIN) as usize;
/// log2 of classes per size doubling (`SC_LG_NGROUP`).
const LG_NGROUP: u32 = 2;
/// jemalloc's page (`LG_PAGE` = 12 as configured on x86-64 and aarch64 Linux builds).
const PAGE: usize = 1 << 12;
/// Smallest large class (`SC_LARGE_MINCLASS` = page × 4 = 16 KiB).
const LARGE_MINCLASS: usize = PAGE << LG_NGROUP;
/// Largest small class (`SC_SMALL_MAXCLASS` = 14 KiB with 4 KiB pages).
const SMALL_MAXCLASS: usize = LARGE_MINCLASS - (LARGE_MINCLASS >> (LG_NGROUP + 1));

/// Number of class indices needed to cover every size a `Layout` can carry
/// (`isize::MAX`): allocations that large fail, but the index stays in bounds.
pub(crate) const NUM_CLASSES: usize = index_of_size(isize::MAX.unsigned_abs()) + 1;

/// `ceil(log2(x))` for `x >= 1`.
#[inline(always)]
const fn ceil_log2(x: usize) -> u32 {
    // `x - 1` cannot underflow: callers pass x >= 1. For x == 1 this is 0.
    usize::BITS - (x - 1).leading_zeros()
}

/// Class index of a request of `size` bytes with no alignment beyond the natural one.
///
/// `size` 0 is treated as 1, as jemalloc's `malloc(0)` does.
#[inline(always)]
pub(crate) const fn index_of_size(size: usize) -> usize {
    let size = if size == 0 { 1 } else { size };
    if size <= 1 << (LG_QUANTUM - 1) {
        // Tiny classes: one per power of two from 2^LG_TINY_MIN up to half the quantum.
        let lg = ceil_log2(size);
        let lg = if lg < LG_TINY_MIN { LG_TINY_MIN } else { lg };
        return (lg - LG_TINY_MIN) as usize;
    }
    // x = ceil(log2(size)): the doubling the size falls in.
    let x = ceil_log2(size);
    let first_grouped = LG_NGROUP + LG_QUANTUM;
    let shift = x.saturating_sub(first_grouped);
    let group = (shift as usize) << LG_NGROUP;
    let lg_delta = if x < first_grouped + 1 {
        LG_QUANTUM
    } else {
        x - LG_NGROUP - 1
    };
    let within = ((size - 1) >> lg_delta) & ((1 << LG_NGROUP) - 1);
    NTINY + group + within
}

/// Size in bytes of class `index` (the usable size jemalloc hands out).
///
/// Saturates at `u64::MAX` where the arithmetic would overflow (far past the last class
/// [`index_of`] produces for a valid `Layout`).
#[inline]
pub(crate) const fn size_of_index(index: usize) -> u64 {
    if index < NTINY {
        return 1 << (LG_TINY_MIN as usize + index);
    }
    let reduced = index - NTINY;
    let group = reduced >> LG_NGROUP;
    if group >= u64::BITS as usize {
        // Every shift below would overflow.
        return u64::MAX;
    }
    // Lossless: group < 64.
    let group = group as u32;
    let within = (reduced & ((1 << LG_NGROUP) - 1)) as u64;
    let group_base: u64 = if group == 0 {
        0
    } else {
        match (1u64 << (LG_QUANTUM + LG_NGROUP - 1)).checked_shl(group) {
            Some(base) => base,
            None => return u64::MAX,
        }
    };
    let lg_delta = if group == 0 { 1 } else { group } + LG_QUANTUM - 1;
    match (within + 1).checked_shl(lg_delta) {
        Some(step) => group_base.saturating_add(step),
        None => u64::MAX,
    }
}

/// Largest size [`LOOKUP`] covers.
const LOOKUP_MAX: usize = 4096;

/// Class index of every size up to [`LOOKUP_MAX`], in steps of 8 bytes (no class boundary
/// lies between two multiples of 8): `LOOKUP[(size + 7) >> 3]`. One L1-resident load
/// instead of the arithmetic, for the sizes most programs allocate most (jemalloc keeps
/// the same table, `sz_size2index_tab`).
static LOOKUP: [u8; (LOOKUP_MAX >> 3) + 1] = {
    let mut table = [0u8; (LOOKUP_MAX >> 3) + 1];
    let mut i = 0;
    while i < table.len() {
        let index = index_of_size(i << 3);
        assert!(index <= u8::MAX as usize);
        table[i] = index as u8;
        i += 1;
    }
    table
};

/// Largest size [`MEDIUM`] covers.
const MEDIUM_MAX: usize = 64 << 10;

/// Class index of every size in `LOOKUP_MAX + 1..=MEDIUM_MAX`, in steps of 1 KiB (the
/// classes there are multiples of 1 KiB: 5, 6, 7, 8, 10, 12, 14, 16, 20, … 64 KiB):
/// `MEDIUM[(size - 1) >> 10]`. Entries below 4 are never read.
static MEDIUM: [u8; MEDIUM_MAX >> 10] = {
    let mut table = [0u8; MEDIUM_MAX >> 10];
    let mut i = 0;
    while i < table.len() {
        let index = index_of_size((i + 1) << 10);
        assert!(index <= u8::MAX as usize);
        table[i] = index as u8;
        i += 1;
    }
    table
};

/// Class index of a request of more than 4 KiB (`size > LOOKUP_MAX`) with no alignment
/// beyond the natural one: [`index_of_size`], through [`MEDIUM`] up to 64 KiB.
#[inline(always)]
pub(crate) fn index_of_above_lookup(size: usize) -> usize {
    if size > LOOKUP_MAX && size <= MEDIUM_MAX {
        // In bounds: (64 KiB - 1) >> 10 = 63, the table's last index.
        usize::from(MEDIUM[(size - 1) >> 10])
    } else {
        index_of_size(size)
    }
}

/// Whether jemalloc serves a request aligned to `align` by its size alone, whatever the
/// size: `align <= 8`. Its smallest class is 8 bytes and every class is a multiple of 8
/// (small blocks lie at multiples of their class from a page boundary, large ones on
/// pages), so `malloc(size)` is aligned to 8, its class is `index_of_size(size)`, and
/// `sdallocx(ptr, size, 0)` frees it, however it was allocated. One compare, where
/// tikv-jemallocator's test (`align <= 16 && align <= size`, for `malloc` or `mallocx`)
/// takes three: `MemSentry`'s fast path makes this one and calls jemalloc's C API
/// itself (`crate::alloc`).
#[inline(always)]
pub(crate) const fn by_size_alone(align: usize) -> bool {
    align <= 1 << LG_TINY_MIN
}

/// Whether tikv-jemallocator serves a request of `size` bytes aligned to `align` with
/// plain `malloc` (its `layout_to_flags`, with `max_align_t`'s 16 on x86-64 and
/// aarch64): its class is then `index_of_size(size)`, since every class from 16 bytes
/// up is a multiple of 16 and 8 is a multiple of any smaller alignment. Wider than
/// [`by_size_alone`] by the 16-aligned requests of at least 16 bytes.
#[inline(always)]
pub(crate) const fn natural(size: usize, align: usize) -> bool {
    align <= 1 << LG_QUANTUM && align <= size
}

/// The class index of the common request, from [`LOOKUP`]: at most 4 KiB, aligned to at
/// most 8 bytes. `None` for any other request.
///
/// Every class is a multiple of 8 bytes, so an alignment of at most 8 never moves a
/// request to another class (jemalloc's `sz_sa2u` rounds the size up to the alignment,
/// which stays within the class); two compares instead of three.
#[inline(always)]
pub(crate) fn index_of_common(size: usize, align: usize) -> Option<usize> {
    if by_size_alone(align) && size <= LOOKUP_MAX {
        // In bounds: (4096 + 7) >> 3 = 512, the table's last index.
        Some(usize::from(LOOKUP[(size + 7) >> 3]))
    } else {
        None
    }
}

/// Class index of a request with the given size and (power-of-two) alignment, as
/// jemalloc's `sz_sa2u` rounds it.
#[inline]
pub(crate) fn index_of(size: usize, align: usize) -> usize {
    if let Some(index) = index_of_common(size, align) {
        return index;
    }
    if natural(size, align) {
        // Natural alignment beyond the lookup table (sizes above 4 KiB, or 16-byte
        // alignment): every class from 16 bytes up is a multiple of the quantum, so the
        // natural class already satisfies the alignment (tikv-jemallocator asks plain
        // `malloc` for these).
        return index_of_size(size);
    }
    if size <= SMALL_MAXCLASS && align <= PAGE {
        // A small class that is a multiple of the alignment: round the size up first.
        // No overflow: size <= 14 KiB and align <= 4 KiB.
        let index = index_of_size((size + align - 1) & !(align - 1));
        if index < LARGE_MIN_INDEX {
            return index;
        }
    }
    // Large: page-aligned runs, at least the smallest large class.
    if size <= LARGE_MINCLASS {
        LARGE_MIN_INDEX
    } else {
        index_of_size(size)
    }
}

/// Index of the first large bucket (16 KiB); every index from here on is large.
pub(crate) const LARGE_MIN_INDEX: usize = index_of_size(LARGE_MINCLASS);

/// Size of the block jemalloc hands out for a large request (one whose index is at least
/// [`LARGE_MIN_INDEX`]): whole pages, at least the smallest large class.
#[inline]
pub(crate) const fn large_usable(size: usize) -> usize {
    if size <= LARGE_MINCLASS {
        LARGE_MINCLASS
    } else {
        // No overflow: a `Layout`'s size is at most isize::MAX.
        (size + PAGE - 1) & !(PAGE - 1)
    }
}

/// Size of the block jemalloc hands out for a request (its `nallocx`).
#[inline]
pub(crate) fn usable_size(size: usize, align: usize) -> u64 {
    let index = index_of(size, align);
    if index < LARGE_MIN_INDEX {
        size_of_index(index)
    } else {
        // Lossless: usize is at most 64 bits on supported targets.
        large_usable(size) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medium_table_matches_the_arithmetic() {
        for size in (LOOKUP_MAX + 1..=MEDIUM_MAX + 4096).chain([1 << 20, (1 << 20) + 1]) {
            assert_eq!(
                index_of_above_lookup(size),
                index_of_size(size),
                "size {size}"
            );
        }
    }

    #[test]
    fn requests_served_by_size_keep_their_sizes_class() {
        let (mut by_size, mut natural_seen) = (0, 0);
        let large = [
            LARGE_MINCLASS - 1,
            LARGE_MINCLASS + 1,
            1 << 20,
            (1 << 30) + 3,
        ];
        for size in (1..=SMALL_MAXCLASS + 4096).chain(large) {
            for align in (0..=12).map(|shift| 1usize << shift) {
                by_size += usize::from(by_size_alone(align));
                natural_seen += usize::from(natural(size, align));
                if by_size_alone(align) || natural(size, align) {
                    assert_eq!(
                        index_of(size, align),
                        index_of_size(size),
                        "{size}, {align}"
                    );
                }
            }
        }
        // Alignments 1 to 8 for every size; natural: 1 to 16 from 16 bytes up, fewer below.
        let sizes = SMALL_MAXCLASS + 4096 + 4;
        assert_eq!(by_size, 4 * sizes);
        assert!(natural_seen > 5 * (sizes - 16), "{natural_seen}");
    }

    #[test]
    fn first_classes_match_jemalloc_table() {
        let expected = [
            8, 16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512,
        ];
        for (index, size) in expected.into_iter().enumerate() {
            assert_eq!(size_of_index(index), size, "class {index}");
        }
        assert_eq!(size_of_index(LARGE_MIN_INDEX), 16 * 1024);
        assert_eq!(size_of_index(LARGE_MIN_INDEX - 1), 14 * 1024);
    }

    #[test]
    fn index_and_size_round_trip() {
        for index in 0..NUM_CLASSES {
            let size = size_of_index(index);
            assert_eq!(
                index_of_size(size as usize),
                index,
                "class {index} ({size} B)"
            );
            assert_eq!(
                index_of_size(size as usize + 1),
                index + 1,
                "just above {size} B"
            );
        }
    }

    #[test]
    fn lookup_table_equals_arithmetic() {
        for size in 1..=LOOKUP_MAX {
            assert_eq!(index_of(size, 1), index_of_size(size), "size {size}");
        }
    }

    #[test]
    fn boundaries() {
        assert_eq!(index_of_size(0), 0);
        assert_eq!(index_of_size(1), 0);
        assert_eq!(index_of_size(8), 0);
        assert_eq!(index_of_size(9), 1);
        assert_eq!(index_of(1, 16), 1, "alignment rounds a tiny request up");
        assert_eq!(size_of_index(index_of(100, 64)), 128);
        assert_eq!(size_of_index(index_of(100, 8192)), 16 * 1024);
        assert_eq!(NUM_CLASSES, 233);
        assert_eq!(size_of_index(NUM_CLASSES - 1), 1 << 63);
        assert_eq!(
            size_of_index(usize::MAX),
            u64::MAX,
            "saturates instead of overflowing"
        );
        assert_eq!(usable_size(14 * 1024 + 1, 8), 16 * 1024);
        assert_eq!(
            usable_size(32 * 1024 + 1, 8),
            36 * 1024,
            "large: whole pages"
        );
        assert_eq!(
            index_of(32 * 1024 + 1, 8),
            index_of(40 * 1024, 8),
            "bucketed by class"
        );
    }
}
