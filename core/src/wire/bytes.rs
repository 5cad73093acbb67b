//! Big-endian field access that cannot panic.
//!
//! The views only exist after `new_checked` has seen a long enough buffer, so these reads and
//! writes are always in bounds in practice; they still go through `get` so that no path from the
//! wire can index past a buffer. A read out of bounds gives zeros, a write out of bounds is dropped.

/// The byte at `at`.
pub(crate) fn u8_at(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

/// The big-endian `u16` at `at`.
pub(crate) fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array_at(buf, at))
}

/// The `N` bytes at `at`.
pub(crate) fn array_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    at.checked_add(N)
        .and_then(|end| buf.get(at..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .unwrap_or([0; N])
}

/// Writes `value` at `at`.
pub(crate) fn set_u8(buf: &mut [u8], at: usize, value: u8) {
    if let Some(b) = buf.get_mut(at) {
        *b = value;
    }
}

/// Writes `value` big-endian at `at`.
pub(crate) fn set_u16(buf: &mut [u8], at: usize, value: u16) {
    set_bytes(buf, at, &value.to_be_bytes());
}

/// Copies `src` to `at`.
pub(crate) fn set_bytes(buf: &mut [u8], at: usize, src: &[u8]) {
    if let Some(dst) = at
        .checked_add(src.len())
        .and_then(|end| buf.get_mut(at..end))
    {
        dst.copy_from_slice(src);
    }
}

/// `buf[from..]`, or empty.
pub(crate) fn tail(buf: &[u8], from: usize) -> &[u8] {
    buf.get(from..).unwrap_or(&[])
}

/// `buf[from..]`, or empty.
pub(crate) fn tail_mut(buf: &mut [u8], from: usize) -> &mut [u8] {
    buf.get_mut(from..).unwrap_or(&mut [])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_out_of_bounds_give_zeros() {
        let buf = [1, 2, 3];
        assert_eq!(u16_at(&buf, 1), 0x0203);
        assert_eq!(u16_at(&buf, 2), 0);
        assert_eq!(u8_at(&buf, 3), 0);
        assert_eq!(array_at::<4>(&buf, usize::MAX), [0; 4]);
        assert!(tail(&buf, 4).is_empty());
    }

    #[test]
    fn writes_out_of_bounds_are_dropped() {
        let mut buf = [0u8; 3];
        set_u16(&mut buf, 2, 0xffff);
        set_u8(&mut buf, 3, 1);
        set_bytes(&mut buf, usize::MAX, &[1]);
        assert_eq!(buf, [0, 0, 0]);
        set_u16(&mut buf, 1, 0xabcd);
        assert_eq!(buf, [0, 0xab, 0xcd]);
        assert!(tail_mut(&mut buf, 9).is_empty());
    }
}
