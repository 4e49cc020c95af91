//! Seeded mutations of what holdfast reads from disk (holder records,
//! lock-file records and claim names, `.status` files, run-once markers),
//! for the property tests that check holdfast never panics on them and
//! never prints a control character from them.
//!
//! A mutation starts from a real file holdfast (or a peer) wrote and
//! applies a few random edits: a byte replaced, a hostile snippet inserted
//! (terminal escapes, newlines, bidi overrides, invalid UTF-8, huge or
//! negative numbers), a line dropped or doubled, the text cut short. The
//! generator is a seeded xorshift: a failure names its seed, and the same
//! seed replays it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// A small deterministic random source (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; 0 is mapped to a fixed one).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// One element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Snippets an attacker (or a damaged disk) could put in a record.
pub const NASTY: &[&[u8]] = &[
    b"\x1b[31m",
    b"\x1b]0;PWNED\x07",
    b"\n",
    b"\r",
    b"\t",
    b"\0",
    b"\x7f",
    "\u{9b}".as_bytes(),
    "\u{202e}".as_bytes(),
    "\u{200b}".as_bytes(),
    b"\xff\xfe",
    b"\xc3",
    b"99999999999999999999999999",
    b"18446744073709551615",
    b"-1",
    b"0",
    b"|",
    b" ",
    b"end\n",
    b"\nend\n",
    b"holdfast-holder 1\n",
    b"holdfast-lockfile 1\n",
    b"pid 1\n",
    b"since 99999999999.999\n",
    b"lifetime 1e308\n",
];

/// `seed` with one to four random edits.
pub fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = if b.is_empty() {
            0
        } else {
            rng.below(b.len() + 1)
        };
        match rng.below(7) {
            // One byte replaced by any byte.
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = rng.next_u64() as u8;
            }
            // A hostile snippet inserted.
            1 | 2 => {
                let s = rng.pick(NASTY);
                b.splice(at..at, s.iter().copied());
            }
            // Cut short.
            3 => b.truncate(at),
            // A line dropped or doubled.
            4 | 5 => {
                let lines: Vec<&[u8]> = b.split_inclusive(|&c| c == b'\n').collect();
                if !lines.is_empty() {
                    let i = rng.below(lines.len());
                    let mut out: Vec<u8> = Vec::new();
                    for (j, l) in lines.iter().enumerate() {
                        if j != i || rng.below(2) == 0 {
                            out.extend_from_slice(l);
                        }
                        if j == i {
                            out.extend_from_slice(l);
                        }
                    }
                    b = out;
                }
            }
            // A number replaced by an extreme one.
            _ => {
                if let Some(i) = b.iter().position(|c| c.is_ascii_digit()) {
                    let end = b[i..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .map_or(b.len(), |n| i + n);
                    const EXTREME: &[&[u8]] = &[
                        b"0",
                        b"1",
                        b"4294967296",
                        b"99999999999999999999999999",
                        b"-5",
                    ];
                    let n = rng.pick(EXTREME);
                    b.splice(i..end, n.iter().copied());
                }
            }
        }
    }
    b
}

/// A file name made from `seed` the same way: never empty, never `.` or
/// `..`, without `/` or NUL, at most 200 bytes.
pub fn mutate_name(rng: &mut Rng, seed: &str) -> OsString {
    let mut b: Vec<u8> = mutate(rng, seed.as_bytes())
        .into_iter()
        .filter(|&c| c != b'/' && c != 0)
        .take(200)
        .collect();
    if b.is_empty() || b == b"." || b == b".." {
        b = seed.as_bytes().to_vec();
    }
    OsString::from_vec(b)
}

/// The first character of `text` a terminal must not get raw: a control
/// character other than the newline, or an invisible formatting character
/// that reorders or hides text (bidi overrides, zero-width marks).
pub fn unsafe_char(text: &str) -> Option<(usize, char)> {
    text.char_indices().find(|&(_, c)| {
        (c.is_control() && c != '\n')
            || matches!(c,
                '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_replayable_and_vary() {
        let seed = b"holdfast-holder 1\ntoken 3\npid 42\nend\n";
        let a: Vec<Vec<u8>> = (0..50)
            .map({
                let mut r = Rng::new(7);
                move |_| mutate(&mut r, seed)
            })
            .collect();
        let b: Vec<Vec<u8>> = (0..50)
            .map({
                let mut r = Rng::new(7);
                move |_| mutate(&mut r, seed)
            })
            .collect();
        assert_eq!(a, b, "same seed, same cases");
        assert!(a.iter().filter(|m| m.as_slice() != seed).count() > 40);
        let mut r = Rng::new(9);
        for _ in 0..500 {
            let n = mutate_name(&mut r, "a.lock|host|1|x");
            let bytes = n.as_encoded_bytes();
            assert!(!bytes.is_empty() && !bytes.contains(&b'/') && !bytes.contains(&0));
        }
    }

    #[test]
    fn unsafe_chars_are_found() {
        assert_eq!(unsafe_char("held by pid 4\nnext"), None);
        assert_eq!(unsafe_char("a\x1b[31m"), Some((1, '\x1b')));
        assert_eq!(unsafe_char("a\tb"), Some((1, '\t')));
        assert_eq!(unsafe_char("\u{202e}x"), Some((0, '\u{202e}')));
    }
}
