//! Short texts written with `write!` and no allocation. A probe formats a number into a few
//! bytes many times over (a duration in every event, a float in every metric sample); a heap
//! string for each cost more than the formatting itself.

use std::fmt;

/// Up to `N` bytes of text on the stack. Writing past `N` fails with [`fmt::Error`]; callers
/// size it for the longest text their format can produce.
pub struct StackText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackText<N> {
    fn default() -> Self {
        StackText {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> StackText<N> {
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in: always UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn writes_within_its_room_and_refuses_beyond() {
        let mut t = StackText::<8>::default();
        write!(t, "{:.1}", 12.25).unwrap();
        assert_eq!(t.as_str(), "12.2");
        assert!(t.write_str("too long").is_err());
        assert_eq!(t.as_str(), "12.2");
    }
}
