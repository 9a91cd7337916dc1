//! The one capped buffer: bytes that refuse to grow past a limit, so a
//! render's output or an answer being serialised stops at the limit instead
//! of being built whole first and measured after.

use std::io;

/// A buffer with a ceiling; a write that would pass it fails and marks it.
#[derive(Debug)]
pub struct Capped {
    /// The bytes so far.
    buf: Vec<u8>,
    /// The most it holds.
    limit: usize,
    /// Set once a write was refused.
    over: bool,
}

impl Capped {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
            over: false,
        }
    }

    /// Whether a write was refused.
    pub fn over(&self) -> bool {
        self.over
    }

    /// The bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

impl io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len() + b.len() > self.limit {
            self.over = true;
            return Err(io::Error::other("size limit reached"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn refuses_past_the_limit_and_keeps_what_fit() {
        let mut c = Capped::new(4);
        c.write_all(b"abc").unwrap();
        assert!(c.write_all(b"de").is_err());
        assert!(c.over());
        assert_eq!(c.into_inner(), b"abc");
    }
}
