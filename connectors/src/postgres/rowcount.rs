//! Counts tuples in a PostgreSQL binary COPY stream as it passes, without
//! decoding values: only the 2-byte field counts and 4-byte lengths are read.

/// Incremental parser of the binary COPY framing.
#[derive(Debug, Default)]
pub struct TupleCounter {
    state: State,
    /// Bytes of a fixed-size field read so far.
    partial: [u8; 19],
    have: usize,
    rows: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the 19-byte header (signature, flags, extension length).
    #[default]
    Header,
    /// Skipping `n` bytes of header extension.
    Extension(u32),
    /// Reading a tuple's 2-byte field count.
    TupleStart,
    /// Reading a field's 4-byte length; `left` fields remain after it.
    FieldLen { left: u16 },
    /// Skipping `n` bytes of field data, then `left` fields remain.
    FieldData { n: u32, left: u16 },
    /// The trailer was seen.
    Done,
}

impl TupleCounter {
    /// A counter at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tuples started so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether the end-of-data trailer was seen.
    pub fn finished(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `want` bytes into `partial`; true when complete.
    fn fill(&mut self, buf: &mut &[u8], want: usize) -> bool {
        let take = (want - self.have).min(buf.len());
        self.partial[self.have..self.have + take].copy_from_slice(&buf[..take]);
        self.have += take;
        *buf = &buf[take..];
        if self.have == want {
            self.have = 0;
            true
        } else {
            false
        }
    }

    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            if self.have == 0 && self.skim(&mut buf) {
                continue;
            }
            match self.state {
                State::Header => {
                    if self.fill(&mut buf, 19) {
                        let ext = u32::from_be_bytes([
                            self.partial[15],
                            self.partial[16],
                            self.partial[17],
                            self.partial[18],
                        ]);
                        self.state = if ext > 0 {
                            State::Extension(ext)
                        } else {
                            State::TupleStart
                        };
                    }
                }
                State::Extension(n) => {
                    let skip = (n as usize).min(buf.len());
                    buf = &buf[skip..];
                    let rest = n - skip as u32;
                    self.state = if rest == 0 {
                        State::TupleStart
                    } else {
                        State::Extension(rest)
                    };
                }
                State::TupleStart => {
                    if self.fill(&mut buf, 2) {
                        let n = i16::from_be_bytes([self.partial[0], self.partial[1]]);
                        if n < 0 {
                            self.state = State::Done;
                        } else {
                            self.rows += 1;
                            self.state = if n == 0 {
                                State::TupleStart
                            } else {
                                State::FieldLen { left: n as u16 }
                            };
                        }
                    }
                }
                State::FieldLen { left } => {
                    if self.fill(&mut buf, 4) {
                        let len = i32::from_be_bytes([
                            self.partial[0],
                            self.partial[1],
                            self.partial[2],
                            self.partial[3],
                        ]);
                        let left = left - 1;
                        self.state = if len > 0 {
                            State::FieldData {
                                n: len as u32,
                                left,
                            }
                        } else {
                            next_field(left)
                        };
                    }
                }
                State::FieldData { n, left } => {
                    let skip = (n as usize).min(buf.len());
                    buf = &buf[skip..];
                    let rest = n - skip as u32;
                    self.state = if rest == 0 {
                        next_field(left)
                    } else {
                        State::FieldData { n: rest, left }
                    };
                }
                State::Done => return,
            }
        }
    }
}

impl TupleCounter {
    /// The fast path: walks whole tuples lying in `buf` without copying their
    /// framing into `partial`. Returns false when it made no progress (a tuple's
    /// framing straddles the end of `buf`, or the state is not a tuple's).
    fn skim(&mut self, buf: &mut &[u8]) -> bool {
        let start = buf.len();
        loop {
            match self.state {
                State::TupleStart if buf.len() >= 2 => {
                    let n = i16::from_be_bytes([buf[0], buf[1]]);
                    *buf = &buf[2..];
                    if n < 0 {
                        self.state = State::Done;
                        break;
                    }
                    self.rows += 1;
                    self.state = next_field(n as u16);
                }
                State::FieldLen { left } if buf.len() >= 4 => {
                    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    *buf = &buf[4..];
                    let left = left - 1;
                    if len > 0 {
                        let skip = (len as usize).min(buf.len());
                        *buf = &buf[skip..];
                        let rest = len as u32 - skip as u32;
                        if rest > 0 {
                            self.state = State::FieldData { n: rest, left };
                            break;
                        }
                    }
                    self.state = next_field(left);
                }
                _ => break,
            }
        }
        buf.len() != start
    }
}

fn next_field(left: u16) -> State {
    if left == 0 {
        State::TupleStart
    } else {
        State::FieldLen { left }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(rows: usize) -> Vec<u8> {
        let mut v = b"PGCOPY\n\xff\r\n\0".to_vec();
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(&0u32.to_be_bytes());
        for i in 0..rows {
            v.extend_from_slice(&2i16.to_be_bytes());
            v.extend_from_slice(&8i32.to_be_bytes());
            v.extend_from_slice(&(i as i64).to_be_bytes());
            v.extend_from_slice(&(-1i32).to_be_bytes());
        }
        v.extend_from_slice(&(-1i16).to_be_bytes());
        v
    }

    #[test]
    fn counts_across_any_split() {
        let s = stream(1000);
        for step in [1, 2, 3, 7, 19, 64, 4096] {
            let mut c = TupleCounter::new();
            for part in s.chunks(step) {
                c.feed(part);
            }
            assert_eq!(c.rows(), 1000, "step {step}");
            assert!(c.finished());
        }
    }

    #[test]
    fn counts_mixed_field_sizes_across_any_split() {
        let mut s = b"PGCOPY\n\xff\r\n\0".to_vec();
        s.extend_from_slice(&0u32.to_be_bytes());
        s.extend_from_slice(&3u32.to_be_bytes());
        s.extend_from_slice(b"ext");
        for i in 0..500usize {
            s.extend_from_slice(&3i16.to_be_bytes());
            let big = vec![b'x'; i * 7 % 3000];
            s.extend_from_slice(&(big.len() as i32).to_be_bytes());
            s.extend_from_slice(&big);
            s.extend_from_slice(&0i32.to_be_bytes());
            s.extend_from_slice(&(-1i32).to_be_bytes());
        }
        s.extend_from_slice(&0i16.to_be_bytes());
        s.extend_from_slice(&(-1i16).to_be_bytes());
        for step in [1, 2, 5, 13, 255, 4096, 65536, s.len()] {
            let mut c = TupleCounter::new();
            for part in s.chunks(step) {
                c.feed(part);
            }
            assert_eq!(c.rows(), 501, "step {step}");
            assert!(c.finished(), "step {step}");
        }
    }
}
