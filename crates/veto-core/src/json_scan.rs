//! A strict JSON reader for the two small documents every check reads: the JOSE header and the
//! claims. One pass over the text checks it is a single JSON object (RFC 8259) whose objects, at
//! every depth, have distinct member names, and hands each top-level member to the caller with
//! its value already typed: strings decoded (borrowed when they hold no escape), numbers as their
//! literal, anything else (`true`, `null`, an array, an object) as its checked raw text.
//!
//! Why not serde_json: the verify path used it (the header into borrowed slots, the registered
//! claims into `Value`s, every other value skipped through a visitor), and the JSON alone cost
//! three times the HMAC of an HS256 token, in serde's generic machinery rather than in reading
//! bytes. This reader does what that pipeline did, and nothing else:
//! - the same grammar and the same limits as `serde_json::from_str`: leading and trailing
//!   whitespace only, no trailing commas, numbers as RFC 8259 spells them and refused when they
//!   overflow an f64, strings without raw control characters, escapes including surrogate
//!   pairs (a lone surrogate is refused), at most 127 arrays and objects nested (serde_json's
//!   recursion limit), so any document accepted here parses again with serde_json;
//! - duplicate member names refused at every depth, compared decoded (`"\u0065xp"` is `exp`);
//! - the text must be UTF-8, which the caller has checked for the whole document, so slicing
//!   at the ASCII delimiters found here always falls on character boundaries.
//!
//! The property tests below hold it to serde_json's answers on generated documents and on
//! near-misses of them (a character inserted, dropped or replaced, a delimiter doubled or lost);
//! the `verify` fuzz target runs it on arbitrary tokens.
use std::borrow::Cow;

use smallvec::SmallVec;

/// serde_json's recursion limit: 128 levels of remaining depth, and it refuses the container
/// that would take the count to zero, so 127 containers nest (the outermost object included).
const MAX_NESTING: usize = 127;

/// The document is not a strict JSON object. Which rule it broke does not matter to the caller:
/// every use answers `malformed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// A top-level member's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member<'a> {
    /// A string, decoded.
    Str(Cow<'a, str>),
    /// A number, as its literal (valid JSON, finite as an f64).
    Num(&'a str),
    /// `true`, `false`, `null`, an array or an object: its raw text, already checked.
    Other(&'a str),
}

/// Reads `json` as one strict JSON object, calling `member(name, value)` for each top-level
/// member in order. An error from `member` stops the read and is returned.
pub fn object<'a>(
    json: &'a str,
    mut member: impl FnMut(&str, Member<'a>) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    let mut s = Scanner::new(json);
    s.ws();
    if s.peek() != Some(b'{') {
        return Err(Invalid);
    }
    s.object(1, Some(&mut member))?;
    s.end()
}

/// Whether `json` is one strict JSON object (see the module comment).
pub fn is_strict_object(json: &str) -> bool {
    object(json, |_, _| Ok(())).is_ok()
}

/// The strings of a JSON array of strings (`aud`), decoded; `None` for anything else.
pub fn string_array(json: &str) -> Option<Vec<String>> {
    let mut s = Scanner::new(json);
    s.ws();
    s.eat(b'[').ok()?;
    let mut out = Vec::new();
    s.ws();
    if s.peek() == Some(b']') {
        s.i += 1;
    } else {
        loop {
            s.ws();
            out.push(s.string().ok()?.into_owned());
            s.ws();
            match s.next() {
                Some(b',') => continue,
                Some(b']') => break,
                _ => return None,
            }
        }
    }
    s.end().ok()?;
    Some(out)
}

/// The integer a JSON number literal denotes, or its value truncated towards zero when it is a
/// fraction or outside i64 as an integer; `None` when that is outside i64 (a NumericDate).
pub fn numeric_date(literal: &str) -> Option<i64> {
    // The common case, a positive integer of up to 18 digits (every date until the year 3e10),
    // needs neither the scan for a fraction nor the general parser.
    if literal.len() <= 18 && !literal.is_empty() && literal.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            literal
                .bytes()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
        );
    }
    if !literal.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
        && let Ok(i) = literal.parse::<i64>()
    {
        return Some(i);
    }
    let f: f64 = literal.parse().ok()?;
    (f.is_finite() && f.abs() < 9.2e18).then_some(f.trunc() as i64)
}

/// Whether any of the eight bytes in `word` is a quote, a backslash or a control character
/// (below 0x20): the classic "has a zero byte" test, `(x - 0x01..) & !x & 0x80..`, which is
/// exact about whether one exists (bytes of 0x80 and up, inside UTF-8 sequences, never match).
fn ends_plain_run(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    (zero_in(quote) | zero_in(backslash) | below_space) & HIGH != 0
}

/// A member name of up to seven bytes packed into an integer (its bytes, then its length in
/// the top byte, which makes the packing one-to-one), so that finding which of a dozen known
/// names it is compares integers instead of calling `memcmp` for every candidate of the same
/// length (ten of the registered claims have three letters). Longer names are `None`.
pub fn short_name(name: &str) -> Option<u64> {
    let bytes = name.as_bytes();
    if bytes.len() > 7 {
        return None;
    }
    let mut word = [0u8; 8];
    word.get_mut(..bytes.len())?.copy_from_slice(bytes);
    word[7] = bytes.len() as u8;
    Some(u64::from_le_bytes(word))
}

/// [`short_name`] of a literal, for match arms.
pub const fn name_key(name: &str) -> u64 {
    let bytes = name.as_bytes();
    assert!(bytes.len() <= 7, "a short name has at most seven bytes");
    let mut word = (bytes.len() as u64) << 56;
    let mut i = 0;
    while i < bytes.len() {
        word |= (bytes[i] as u64) << (8 * i);
        i += 1;
    }
    word
}

/// The first seven bytes of a name and its length (capped): equal for equal names.
fn prefix_key(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let head = bytes.get(..7).unwrap_or(bytes);
    let mut word = [0u8; 8];
    if let Some(w) = word.get_mut(..head.len()) {
        w.copy_from_slice(head);
    }
    word[7] = bytes.len().min(255) as u8;
    u64::from_le_bytes(word)
}

/// Objects up to this many members are read without allocating.
const SMALL_OBJECT: usize = 16;

/// The names of one object so far, each with its [`prefix_key`].
type Names<'a> = SmallVec<[(u64, Cow<'a, str>); SMALL_OBJECT]>;

/// Whether any name occurs twice. Up to `SMALL_OBJECT` names, a 256-bit filter over the keys
/// sends a name to the comparisons with the earlier ones only when its bit is already set
/// (about one name in four of a token's claims), which beats sorting a dozen; beyond, sorting by
/// key and then name puts repeats side by side, so a hostile object of thousands of members
/// costs n log n, not n².
fn has_repeat(names: &mut Names<'_>) -> bool {
    if names.len() <= SMALL_OBJECT {
        let mut seen = [0u64; 4];
        for (i, (key, name)) in names.iter().enumerate() {
            // The top byte of a multiplicative hash picks one of 256 bits.
            let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56;
            let (word, bit) = ((h >> 6) as usize & 3, 1u64 << (h & 63));
            let Some(w) = seen.get_mut(word) else {
                continue;
            };
            if *w & bit != 0 && names.iter().take(i).any(|(k, n)| k == key && n == name) {
                return true;
            }
            *w |= bit;
        }
        return false;
    }
    names.sort_unstable();
    names.windows(2).any(|w| w.first() == w.get(1))
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    i: usize,
}

/// Called for each top-level member; nested objects pass `None`.
type OnMember<'c, 'a> = Option<&'c mut dyn FnMut(&str, Member<'a>) -> Result<(), Invalid>>;

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            bytes: text.as_bytes(),
            i: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Result<(), Invalid> {
        match self.next() {
            Some(b) if b == want => Ok(()),
            _ => Err(Invalid),
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn end(&mut self) -> Result<(), Invalid> {
        self.ws();
        if self.i == self.bytes.len() {
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    fn slice(&self, from: usize, to: usize) -> Result<&'a str, Invalid> {
        self.text.get(from..to).ok_or(Invalid)
    }

    /// At `{`; `depth` counts this object.
    fn object(&mut self, depth: usize, mut on_member: OnMember<'_, 'a>) -> Result<(), Invalid> {
        if depth > MAX_NESTING {
            return Err(Invalid);
        }
        self.eat(b'{')?;
        // A token's claims have a dozen members: kept on the stack up to `SMALL_OBJECT`
        // (no allocation per object), each name with a cheap key (`prefix_key`) so that finding
        // repeats compares integers almost always; see `has_repeat`.
        let mut names: Names<'a> = SmallVec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(Invalid);
            }
            let name = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            match on_member.as_mut() {
                Some(f) => {
                    let value = self.member()?;
                    f(&name, value)?;
                }
                None => self.value(depth)?,
            }
            names.push((prefix_key(&name), name));
            self.ws();
            match self.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(Invalid),
            }
        }
        if has_repeat(&mut names) {
            return Err(Invalid);
        }
        Ok(())
    }

    /// A top-level member's value (depth 1 is the top-level object).
    fn member(&mut self) -> Result<Member<'a>, Invalid> {
        match self.peek() {
            Some(b'"') => Ok(Member::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => Ok(Member::Num(self.number()?)),
            _ => {
                let start = self.i;
                self.value(1)?;
                Ok(Member::Other(self.slice(start, self.i)?))
            }
        }
    }

    /// Any value inside a container at `depth`.
    fn value(&mut self, depth: usize) -> Result<(), Invalid> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, None),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            _ => Err(Invalid),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), Invalid> {
        let end = self.i + word.len();
        if self.bytes.get(self.i..end) == Some(word.as_bytes()) {
            self.i = end;
            Ok(())
        } else {
            Err(Invalid)
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Invalid> {
        if depth > MAX_NESTING {
            return Err(Invalid);
        }
        self.eat(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(()),
                _ => return Err(Invalid),
            }
        }
    }

    /// A number literal (RFC 8259 §6), refused when it overflows an f64 as serde_json does.
    fn number(&mut self) -> Result<&'a str, Invalid> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Invalid),
        }
        let mut plain = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
            plain = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
            plain = false;
        }
        let literal = self.slice(start, self.i)?;
        // Up to 18 digits always fit: only longer integers and floats can overflow.
        if !plain || literal.len() > 18 {
            let f: f64 = literal.parse().map_err(|_| Invalid)?;
            if !f.is_finite() {
                return Err(Invalid);
            }
        }
        Ok(literal)
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), Invalid> {
        match self.next() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            _ => Err(Invalid),
        }
    }

    /// At `"`: the string, decoded. Borrowed unless it holds an escape.
    fn string(&mut self) -> Result<Cow<'a, str>, Invalid> {
        self.eat(b'"')?;
        let start = self.i;
        // Eight bytes at a time while none of them ends the plain run: strings are most of a
        // token's claims, and a byte at a time was most of the cost of reading them.
        while let Some(chunk) = self.bytes.get(self.i..self.i + 8)
            && let Ok(word) = <[u8; 8]>::try_from(chunk)
            && !ends_plain_run(u64::from_le_bytes(word))
        {
            self.i += 8;
        }
        loop {
            match self.peek() {
                Some(b'"') => {
                    let s = self.slice(start, self.i)?;
                    self.i += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(0x20..) => self.i += 1,
                _ => return Err(Invalid),
            }
        }
        let mut out = String::from(self.slice(start, self.i)?);
        loop {
            match self.next() {
                Some(b'"') => return Ok(Cow::Owned(out)),
                Some(b'\\') => out.push(self.escape()?),
                Some(0x20..) => {
                    let run = self.i - 1;
                    while let Some(b) = self.peek()
                        && b >= 0x20
                        && b != b'"'
                        && b != b'\\'
                    {
                        self.i += 1;
                    }
                    out.push_str(self.slice(run, self.i)?);
                }
                _ => return Err(Invalid),
            }
        }
    }

    /// After a backslash.
    fn escape(&mut self) -> Result<char, Invalid> {
        Ok(match self.next() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        // A leading surrogate must be followed by an escaped trailing one.
                        self.eat(b'\\')?;
                        self.eat(b'u')?;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(Invalid);
                        }
                        0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(Invalid),
                    _ => u32::from(unit),
                };
                char::from_u32(code).ok_or(Invalid)?
            }
            _ => return Err(Invalid),
        })
    }

    fn hex4(&mut self) -> Result<u16, Invalid> {
        let mut v: u16 = 0;
        for _ in 0..4 {
            let d = match self.next() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(Invalid),
            };
            v = (v << 4) | u16::from(d);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strict_json::StrictValue;
    use proptest::prelude::*;

    /// What the verify path accepted before this reader: serde_json's grammar and limits, an
    /// object at the top, distinct names at every depth.
    fn reference(json: &str) -> bool {
        serde_json::from_str::<StrictValue>(json).is_ok_and(|v| v.0.is_object())
    }

    fn members(json: &str) -> Result<Vec<(String, Member<'_>)>, Invalid> {
        let mut out = Vec::new();
        object(json, |n, v| {
            out.push((n.to_owned(), v));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn agrees_with_serde_json_on_edge_cases() {
        let nested = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        let cases = [
            "{}".to_owned(),
            " \t\r\n{ } \n".to_owned(),
            r#"{"a":1}"#.to_owned(),
            r#"{"a":1,}"#.to_owned(),
            r#"{,"a":1}"#.to_owned(),
            r#"{"a" 1}"#.to_owned(),
            r#"{"a":1 "b":2}"#.to_owned(),
            r#"{"a":1}{}"#.to_owned(),
            r#"{"a":1} x"#.to_owned(),
            r#"[]"#.to_owned(),
            r#""a""#.to_owned(),
            "1".to_owned(),
            "".to_owned(),
            "{".to_owned(),
            r#"{"a":}"#.to_owned(),
            r#"{"a":01}"#.to_owned(),
            r#"{"a":-0}"#.to_owned(),
            r#"{"a":-}"#.to_owned(),
            r#"{"a":1.}"#.to_owned(),
            r#"{"a":.5}"#.to_owned(),
            r#"{"a":+1}"#.to_owned(),
            r#"{"a":1e}"#.to_owned(),
            r#"{"a":1e+}"#.to_owned(),
            r#"{"a":1E-7}"#.to_owned(),
            r#"{"a":1e400}"#.to_owned(),
            r#"{"a":-1e400}"#.to_owned(),
            r#"{"a":1e-400}"#.to_owned(),
            r#"{"a":0e999999999999999}"#.to_owned(),
            format!(r#"{{"a":{}}}"#, "9".repeat(400)),
            r#"{"a":18446744073709551616}"#.to_owned(),
            r#"{"a":tru}"#.to_owned(),
            r#"{"a":true,"b":false,"c":null}"#.to_owned(),
            r#"{"a":nul}"#.to_owned(),
            r#"{"a":"\u0041\n\t\"\\\/\b\f\r"}"#.to_owned(),
            r#"{"a":"\x"}"#.to_owned(),
            r#"{"a":"\u00"}"#.to_owned(),
            r#"{"a":"\u00zz"}"#.to_owned(),
            r#"{"a":"\ud83d\ude00"}"#.to_owned(),
            r#"{"a":"\ud83d"}"#.to_owned(),
            r#"{"a":"\ud83dx"}"#.to_owned(),
            r#"{"a":"\ud83d\u0041"}"#.to_owned(),
            r#"{"a":"\ude00"}"#.to_owned(),
            "{\"a\":\"\u{1}\"}".to_owned(),
            "{\"a\":\"\u{7f}é😀\"}".to_owned(),
            r#"{"a":1,"a":2}"#.to_owned(),
            r#"{"a":1,"\u0061":2}"#.to_owned(),
            r#"{"a":{"b":1,"b":2}}"#.to_owned(),
            r#"{"a":[{"b":1},{"b":1,"c":[{"d":1,"d":1}]}]}"#.to_owned(),
            r#"{"a":{"b":1},"b":{"a":1}}"#.to_owned(),
            nested(125),
            nested(126),
            nested(127),
            nested(200),
        ];
        for case in &cases {
            assert_eq!(
                is_strict_object(case),
                reference(case),
                "disagreement on {case}"
            );
        }
    }

    #[test]
    fn members_are_typed_and_borrowed_when_plain() {
        let got = members(r#"{"s":"x","e":"\u0078","n":-1.5e3,"o":{"k":[1, 2]},"b":true}"#)
            .expect("valid");
        assert_eq!(got.len(), 5);
        assert!(matches!(&got[0].1, Member::Str(Cow::Borrowed("x"))));
        assert!(matches!(&got[1].1, Member::Str(Cow::Owned(s)) if s == "x"));
        assert_eq!(got[2].1, Member::Num("-1.5e3"));
        assert_eq!(got[3].1, Member::Other(r#"{"k":[1, 2]}"#));
        assert_eq!(got[4].1, Member::Other("true"));
        // A name is handed over decoded.
        let escaped = members(r#"{"\u0065xp":1}"#).expect("valid");
        assert_eq!(escaped[0].0, "exp");
        // The caller's refusal stops the read.
        assert_eq!(object(r#"{"a":1}"#, |_, _| Err(Invalid)), Err(Invalid));
    }

    #[test]
    fn plain_runs_end_at_quotes_backslashes_and_controls() {
        let word = |b: &[u8; 8]| u64::from_le_bytes(*b);
        assert!(!ends_plain_run(word(b"abcdefgh")));
        assert!(!ends_plain_run(word(
            "é😀ab".as_bytes().try_into().unwrap()
        )));
        assert!(!ends_plain_run(word(b" ~!#$%&'")));
        for special in [b'"', b'\\', 0x00, 0x01, 0x1f] {
            for at in 0..8 {
                let mut w = *b"abcdefgh";
                w[at] = special;
                assert!(ends_plain_run(word(&w)), "{special:#x} at {at}");
            }
        }
    }

    #[test]
    fn short_names_are_distinct() {
        let names = ["", "a", "a\0", "ab", "exp", "exp\0", "client_", "1234567"];
        for a in names {
            assert_eq!(short_name(a), Some(name_key(a)), "{a:?}");
            for b in names {
                assert_eq!(short_name(a) == short_name(b), a == b, "{a:?} {b:?}");
            }
        }
        assert_eq!(short_name("client_i"), None);
    }

    #[test]
    fn string_arrays() {
        assert_eq!(
            string_array(r#"[ "a", "\u0062" ]"#),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(string_array("[]"), Some(vec![]));
        for bad in [r#"["a",1]"#, r#"["a",]"#, r#"["a"] x"#, r#""a""#, "[", "{}"] {
            assert_eq!(string_array(bad), None, "{bad}");
        }
    }

    #[test]
    fn numeric_dates() {
        for (lit, want) in [
            ("0", Some(0)),
            ("1800000000", Some(1_800_000_000)),
            ("999999999999999999", Some(999_999_999_999_999_999)),
            ("1000000000000000000", Some(1_000_000_000_000_000_000)),
            ("-0", Some(0)),
            ("-1", Some(-1)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("1.9", Some(1)),
            ("-1.9", Some(-1)),
            ("19e-1", Some(1)),
            ("1e3", Some(1000)),
            ("9.1e18", Some(9_100_000_000_000_000_000)),
            ("9.3e18", None),
            ("-9.3e18", None),
            ("18446744073709551615", None),
            ("1e400", None),
        ] {
            assert_eq!(numeric_date(lit), want, "{lit}");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("exp".to_owned()),
            Just(r"\u0061".to_owned()),
            "[a-z]{0,3}",
        ]
    }

    fn object_text(members: Vec<(String, String)>) -> String {
        let members: Vec<String> = members
            .into_iter()
            .map(|(n, v)| format!("\"{n}\" : {v}"))
            .collect();
        format!("{{ {} }}", members.join(","))
    }

    /// A JSON object, as text, with whitespace, escapes and repeated names thrown in.
    fn document() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?",
            r#""([a-zé😀 ]|\\[nt"\\/]|\\u00[0-7][0-9a-f]|\\ud83d\\ude00){0,6}""#,
        ];
        let value = leaf.prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((name(), inner), 0..6).prop_map(object_text),
            ]
        });
        prop::collection::vec((name(), value), 0..8).prop_map(object_text)
    }

    /// A document with one character inserted, removed or replaced: near-misses of the grammar.
    fn mutated() -> impl Strategy<Value = String> {
        (
            document(),
            any::<prop::sample::Index>(),
            0u8..3,
            prop::sample::select(vec![
                '{', '}', '[', ']', '"', '\\', ',', ':', ' ', '0', '1', '-', '.', 'e', 'u', 'n',
                '\u{1}', 'é',
            ]),
        )
            .prop_map(|(doc, at, how, c)| {
                let mut chars: Vec<char> = doc.chars().collect();
                let i = at.index(chars.len() + 1);
                match how {
                    0 => chars.insert(i, c),
                    1 if i < chars.len() => {
                        chars.remove(i);
                    }
                    _ if i < chars.len() => chars[i] = c,
                    _ => chars.push(c),
                }
                chars.into_iter().collect()
            })
    }

    /// A document with one delimiter edited where grammars usually go wrong: a comma doubled,
    /// dropped or left trailing, a bracket or colon lost, an escape or a number cut short.
    fn edited() -> impl Strategy<Value = String> {
        let edits = prop::sample::select(vec![
            (",", ""),
            (",", ",,"),
            ("]", ",]"),
            ("}", ",}"),
            ("[", "[,"),
            ("{", "{,"),
            (":", ""),
            (":", "::"),
            ("\"", ""),
            ("]", ""),
            ("}", ""),
            ("\\", ""),
            ("\\u", "\\u0"),
            (".", ".e"),
            ("e", ""),
            ("-", "--"),
            ("0", "00"),
            (" ", "\u{b}"),
        ]);
        (document(), edits, any::<prop::sample::Index>()).prop_map(|(doc, (from, to), at)| {
            let spots: Vec<usize> = doc.match_indices(from).map(|(i, _)| i).collect();
            match spots.get(at.index(spots.len().max(1))) {
                Some(&i) => format!("{}{to}{}", &doc[..i], &doc[i + from.len()..]),
                None => doc,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn agrees_with_serde_json(doc in prop_oneof![document(), mutated(), edited()]) {
            prop_assert_eq!(is_strict_object(&doc), reference(&doc), "{}", doc);
        }

        #[test]
        fn top_level_members_match_serde_json(doc in document()) {
            let Ok(got) = members(&doc) else { return Ok(()) };
            let value: serde_json::Value = serde_json::from_str(&doc).expect("accepted by both");
            let map = value.as_object().expect("an object");
            prop_assert_eq!(got.len(), map.len());
            for (name, member) in &got {
                let want = &map[name.as_str()];
                match member {
                    Member::Str(s) => prop_assert_eq!(Some(s.as_ref()), want.as_str()),
                    Member::Num(n) => {
                        // serde_json's default float parsing may round the last bit differently.
                        let (a, b) = (n.parse::<f64>().expect("a number"), want.as_f64().expect("a number"));
                        prop_assert!((a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs()), "{} vs {}", a, b);
                    }
                    Member::Other(raw) => {
                        let again: serde_json::Value = serde_json::from_str(raw).expect("raw text parses");
                        prop_assert_eq!(&again, want);
                    }
                }
            }
        }
    }
}
