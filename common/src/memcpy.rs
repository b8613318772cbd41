//! `memcpy`, `memmove` and `memcmp` for the static musl build of every binary.
//!
//! musl's x86-64 `memcpy` copies with `rep movsq` plus one `movsb` per leftover byte: a
//! start-up of tens of cycles, whatever the size. The worker copies short keys and values
//! by the million (the shuffle's reader and writer, the merge, the records handed to and
//! from the app): a profile of `make bench` figure 3 had `memcpy` at 19% of all samples,
//! from ~740,000 calls per job, 93% of them of at most 16 bytes. These copy up to 32 bytes
//! with two overlapping loads and then two stores (so they are also correct for
//! overlapping buffers), and longer ones with `rep movsb`, which CPUs with ERMS (every
//! x86-64 of the last decade) run at full speed; `memmove` copies backwards when the
//! destination overlaps the end of the source. musl's `memcmp` is a loop over single
//! bytes (2.6% of a figure-1 profile, under every key comparison of the sort and the
//! merge); this one compares 8 bytes at a time. The linker resolves `memcpy` from the
//! crates' archives, which come before musl's `libc.a`, so these take the place of musl's
//! (which is then never pulled in).
//!
//! Nothing here may call `memcpy` or `memcmp` itself: only single loads and stores, and
//! `asm!` (the unit tests and `objdump` confirm: the functions make no calls).

use core::arch::asm;
use core::ptr::{read_unaligned as load, write_unaligned as store};

/// Copies `n <= 32` bytes: every load before any store, so overlap is harmless.
#[inline(always)]
unsafe fn copy_short(dst: *mut u8, src: *const u8, n: usize) {
    unsafe {
        if n >= 16 {
            let (a, b) = (
                load(src.cast::<u128>()),
                load(src.add(n - 16).cast::<u128>()),
            );
            store(dst.cast::<u128>(), a);
            store(dst.add(n - 16).cast::<u128>(), b);
        } else if n >= 8 {
            let (a, b) = (load(src.cast::<u64>()), load(src.add(n - 8).cast::<u64>()));
            store(dst.cast::<u64>(), a);
            store(dst.add(n - 8).cast::<u64>(), b);
        } else if n >= 4 {
            let (a, b) = (load(src.cast::<u32>()), load(src.add(n - 4).cast::<u32>()));
            store(dst.cast::<u32>(), a);
            store(dst.add(n - 4).cast::<u32>(), b);
        } else if n > 0 {
            let (a, b, c) = (*src, *src.add(n / 2), *src.add(n - 1));
            *dst = a;
            *dst.add(n / 2) = b;
            *dst.add(n - 1) = c;
        }
    }
}

/// `rep movsb` upwards: correct when `dst` does not overlap the end of `src`.
#[inline(always)]
unsafe fn copy_up(dst: *mut u8, src: *const u8, n: usize) {
    unsafe {
        asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

/// `rep movsb` downwards (direction flag set, then cleared as the ABI requires).
#[inline(always)]
unsafe fn copy_down(dst: *mut u8, src: *const u8, n: usize) {
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dst.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack)
        );
    }
}

/// # Safety
/// The C `memcpy`: `src` and `dst` valid for `n` bytes and not overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    unsafe {
        if n <= 32 {
            copy_short(dst, src, n);
        } else {
            copy_up(dst, src, n);
        }
    }
    dst
}

/// # Safety
/// The C `memmove`: `src` and `dst` valid for `n` bytes, possibly overlapping.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    unsafe {
        if n <= 32 {
            copy_short(dst, src, n);
        } else if (dst as usize).wrapping_sub(src as usize) >= n {
            // `dst` is below `src`, or past its end: upwards never reads a byte it wrote.
            copy_up(dst, src, n);
        } else {
            copy_down(dst, src, n);
        }
    }
    dst
}

/// # Safety
/// The C `memcmp`: `a` and `b` valid for `n` bytes. Returns the sign of the first
/// differing byte's difference (as unsigned bytes), 0 if none differs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    unsafe {
        while i + 8 <= n {
            let (x, y) = (load(a.add(i).cast::<u64>()), load(b.add(i).cast::<u64>()));
            if x != y {
                // Big-endian: the first differing byte decides.
                return if x.swap_bytes() < y.swap_bytes() {
                    -1
                } else {
                    1
                };
            }
            i += 8;
        }
        while i < n {
            let (x, y) = (*a.add(i), *b.add(i));
            if x != y {
                return i32::from(x) - i32::from(y);
            }
            i += 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    /// What the program calls as `memcpy` and `memmove` is the code here, not musl's.
    #[test]
    fn memcpy_is_ours() {
        type Copy = unsafe extern "C" fn(*mut u8, *const u8, usize) -> *mut u8;
        type LibcCopy = unsafe extern "C" fn(
            *mut libc::c_void,
            *const libc::c_void,
            usize,
        ) -> *mut libc::c_void;
        let address = |f: LibcCopy| f as *const () as usize;
        let ours = |f: Copy| f as *const () as usize;
        assert_eq!(address(libc::memcpy), ours(super::memcpy));
        assert_eq!(address(libc::memmove), ours(super::memmove));
        type Compare = unsafe extern "C" fn(*const u8, *const u8, usize) -> i32;
        type LibcCompare =
            unsafe extern "C" fn(*const libc::c_void, *const libc::c_void, usize) -> i32;
        let compare = |f: LibcCompare| f as *const () as usize;
        let ours_compare = |f: Compare| f as *const () as usize;
        assert_eq!(compare(libc::memcmp), ours_compare(super::memcmp));
    }

    /// Byte `i` of the test pattern.
    fn byte(i: usize) -> u8 {
        (i.wrapping_mul(131) ^ (i >> 3)) as u8
    }

    /// Every length to 300 at every alignment to 16, each copy checked byte by byte
    /// (including the bytes around it, which must not change).
    #[test]
    fn memcpy_copies_exactly_the_bytes_asked() {
        let src: Vec<u8> = (0..400).map(byte).collect();
        for n in 0..300 {
            for (from, to) in [(0, 0), (1, 3), (7, 0), (15, 9), (3, 16)] {
                let mut dst = vec![0xEEu8; 400];
                unsafe { super::memcpy(dst.as_mut_ptr().add(to), src.as_ptr().add(from), n) };
                for (j, &b) in dst.iter().enumerate() {
                    let want = if (to..to + n).contains(&j) {
                        byte(from + j - to)
                    } else {
                        0xEE
                    };
                    assert_eq!(b, want, "n {n}, from {from}, to {to}, byte {j}");
                }
            }
        }
    }

    /// Overlapping moves in both directions, short and long, against the expected bytes.
    #[test]
    fn memmove_handles_overlap_both_ways() {
        for n in 0..300 {
            for shift in [1usize, 2, 7, 8, 15, 16, 33, 100] {
                for up in [false, true] {
                    let mut buf: Vec<u8> = (0..700).map(byte).collect();
                    let (from, to) = if up {
                        (50, 50 + shift)
                    } else {
                        (50 + shift, 50)
                    };
                    let p = buf.as_mut_ptr();
                    unsafe { super::memmove(p.add(to), p.add(from), n) };
                    for (j, &b) in buf.iter().enumerate() {
                        let want = if (to..to + n).contains(&j) {
                            byte(from + j - to)
                        } else {
                            byte(j)
                        };
                        assert_eq!(b, want, "n {n}, shift {shift}, up {up}, byte {j}");
                    }
                }
            }
        }
    }

    /// The sign of `memcmp` equals byte-by-byte comparison's, for every length to 40 and
    /// a difference at every position, both ways round, bytes above 0x7f included.
    #[test]
    fn memcmp_orders_like_unsigned_bytes() {
        let sign = |a: &[u8], b: &[u8]| -> i32 {
            for i in 0..a.len() {
                if a[i] != b[i] {
                    return if a[i] < b[i] { -1 } else { 1 };
                }
            }
            0
        };
        for n in 0..40 {
            let base: Vec<u8> = (0..n).map(byte).collect();
            assert_eq!(
                unsafe { super::memcmp(base.as_ptr(), base.clone().as_ptr(), n) },
                0
            );
            for at in 0..n {
                for delta in [1u8, 0x80, 0xff] {
                    let mut other = base.clone();
                    other[at] = other[at].wrapping_add(delta);
                    // Bytes after the difference must not matter.
                    for later in other.iter_mut().skip(at + 1) {
                        *later = !*later;
                    }
                    for (x, y) in [(&base, &other), (&other, &base)] {
                        let got = unsafe { super::memcmp(x.as_ptr(), y.as_ptr(), n) };
                        assert_eq!(got.signum(), sign(x, y), "n {n}, at {at}, delta {delta}");
                    }
                }
            }
        }
    }
}
