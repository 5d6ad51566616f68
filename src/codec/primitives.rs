//! The notation types of the native protocol (§3 of the specification), as `nom` parsers over
//! borrowed bytes. Collections are validated once and then read lazily, without allocating.

use nom::bytes::complete::take;
use nom::number::complete::{be_i32, be_i64, be_u16, be_u8};
use nom::IResult;

use super::error::CodecError;

/// The parser result type used throughout the codec.
pub type PResult<'a, T> = IResult<&'a [u8], T>;

/// Runs a parser over a whole body; `what` names the message in the error.
pub fn run<'a, T>(
    what: &'static str,
    input: &'a [u8],
    mut p: impl FnMut(&'a [u8]) -> PResult<'a, T>,
) -> Result<(&'a [u8], T), CodecError> {
    p(input).map_err(|_| CodecError::Malformed(what))
}

/// Like [`run`] but requires every byte to be consumed.
pub fn run_all<'a, T>(
    what: &'static str,
    input: &'a [u8],
    p: impl FnMut(&'a [u8]) -> PResult<'a, T>,
) -> Result<T, CodecError> {
    match run(what, input, p)? {
        ([], v) => Ok(v),
        _ => Err(CodecError::Malformed(what)),
    }
}

fn fail<T>(i: &[u8]) -> PResult<'_, T> {
    Err(nom::Err::Error(nom::error::Error::new(
        i,
        nom::error::ErrorKind::Verify,
    )))
}

pub fn byte(i: &[u8]) -> PResult<'_, u8> {
    be_u8(i)
}
pub fn short(i: &[u8]) -> PResult<'_, u16> {
    be_u16(i)
}
pub fn int(i: &[u8]) -> PResult<'_, i32> {
    be_i32(i)
}
pub fn long(i: &[u8]) -> PResult<'_, i64> {
    be_i64(i)
}

fn as_str<'a>(rest: &'a [u8], b: &'a [u8]) -> PResult<'a, &'a str> {
    match core::str::from_utf8(b) {
        Ok(s) => Ok((rest, s)),
        Err(_) => fail(rest),
    }
}

/// [string]: a [short] n, then n bytes of UTF-8.
pub fn string(i: &[u8]) -> PResult<'_, &str> {
    let (i, n) = short(i)?;
    let (i, b) = take(n)(i)?;
    as_str(i, b)
}

/// [long string]: an [int] n (not negative), then n bytes of UTF-8.
pub fn long_string(i: &[u8]) -> PResult<'_, &str> {
    let (i, n) = int(i)?;
    if n < 0 {
        return fail(i);
    }
    let (i, b) = take(n as u32)(i)?;
    as_str(i, b)
}

/// [bytes]: an [int] n, then n bytes; negative n is null.
pub fn bytes(i: &[u8]) -> PResult<'_, Option<&[u8]>> {
    let (i, n) = int(i)?;
    if n < 0 {
        return Ok((i, None));
    }
    let (i, b) = take(n as u32)(i)?;
    Ok((i, Some(b)))
}

/// [short bytes]: a [short] n, then n bytes.
pub fn short_bytes(i: &[u8]) -> PResult<'_, &[u8]> {
    let (i, n) = short(i)?;
    take(n)(i)
}

/// A bound [value].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Bytes(&'a [u8]),
    Null,
    Unset,
}

/// [value]: an [int] n, then n bytes; -1 is null, -2 is "not set"; other negatives are invalid.
pub fn value(i: &[u8]) -> PResult<'_, Value<'_>> {
    let (i, n) = int(i)?;
    match n {
        -1 => Ok((i, Value::Null)),
        -2 => Ok((i, Value::Unset)),
        n if n < 0 => fail(i),
        n => {
            let (i, b) = take(n as u32)(i)?;
            Ok((i, Value::Bytes(b)))
        }
    }
}

/// [consistency]: a [short].
pub fn consistency(i: &[u8]) -> PResult<'_, Consistency> {
    let (i, c) = short(i)?;
    Ok((i, Consistency(c)))
}

/// A consistency level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Consistency(pub u16);

impl Consistency {
    /// The level's name (`LOCAL_ONE`), or `UNKNOWN`.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x0000 => "ANY",
            0x0001 => "ONE",
            0x0002 => "TWO",
            0x0003 => "THREE",
            0x0004 => "QUORUM",
            0x0005 => "ALL",
            0x0006 => "LOCAL_QUORUM",
            0x0007 => "EACH_QUORUM",
            0x0008 => "SERIAL",
            0x0009 => "LOCAL_SERIAL",
            0x000A => "LOCAL_ONE",
            _ => "UNKNOWN",
        }
    }
}

/// [uuid]: 16 bytes.
pub fn uuid(i: &[u8]) -> PResult<'_, [u8; 16]> {
    let (i, b) = take(16usize)(i)?;
    let mut u = [0u8; 16];
    u.copy_from_slice(b);
    Ok((i, u))
}

/// [inetaddr]: a [byte] n (4 or 16), then n address bytes.
pub fn inetaddr(i: &[u8]) -> PResult<'_, &[u8]> {
    let (i, n) = byte(i)?;
    if n != 4 && n != 16 {
        return fail(i);
    }
    take(n)(i)
}

/// [inet]: an [inetaddr] then an [int] port.
pub fn inet(i: &[u8]) -> PResult<'_, (&[u8], i32)> {
    let (i, a) = inetaddr(i)?;
    let (i, p) = int(i)?;
    Ok((i, (a, p)))
}

/// `p` when `present` (a flag or a version says the field is there), else nothing.
#[inline]
pub(crate) fn optional<'a, T>(
    i: &'a [u8],
    present: bool,
    p: impl FnOnce(&'a [u8]) -> PResult<'a, T>,
) -> PResult<'a, Option<T>> {
    if present {
        let (i, v) = p(i)?;
        Ok((i, Some(v)))
    } else {
        Ok((i, None))
    }
}

/// Skips `n` repetitions of `p`, returning the bytes they covered.
#[inline]
pub(crate) fn counted<'a, T>(
    i: &'a [u8],
    n: usize,
    mut p: impl FnMut(&'a [u8]) -> PResult<'a, T>,
) -> PResult<'a, &'a [u8]> {
    let start = i;
    let mut rest = i;
    for _ in 0..n {
        rest = p(rest)?.0;
    }
    let used = start.len() - rest.len();
    Ok((rest, start.get(..used).unwrap_or_default()))
}

/// Reads lazily the `count` items of `p` in `raw`, bytes that [`counted`] validated: it stops
/// at the first item that does not decode (there is none in validated bytes).
#[inline]
pub(crate) fn read_counted<'a, T: 'a>(
    raw: &'a [u8],
    count: u16,
    p: impl Fn(&'a [u8]) -> PResult<'a, T> + 'a,
) -> impl Iterator<Item = T> + 'a {
    let mut rest = raw;
    (0..count).map_while(move |_| {
        let (r, v) = p(rest).ok()?;
        rest = r;
        Some(v)
    })
}

/// [short] n, then n items of `p`: the bytes they cover, and n.
#[inline]
pub(crate) fn short_counted<'a, T>(
    i: &'a [u8],
    p: impl FnMut(&'a [u8]) -> PResult<'a, T>,
) -> PResult<'a, (&'a [u8], u16)> {
    let (i, n) = short(i)?;
    let (i, raw) = counted(i, usize::from(n), p)?;
    Ok((i, (raw, n)))
}

/// The value of the last of `pairs` named `key` (exact match).
#[inline]
fn last_value<'a, V>(pairs: impl Iterator<Item = (&'a str, V)>, key: &str) -> Option<V> {
    pairs.filter(|(k, _)| *k == key).map(|(_, v)| v).last()
}

/// `len` and `is_empty` of a validated collection that keeps its item count in `count`.
macro_rules! counted_len {
    () => {
        pub fn len(&self) -> usize {
            usize::from(self.count)
        }
        pub fn is_empty(&self) -> bool {
            self.count == 0
        }
    };
}
pub(crate) use counted_len;

/// A validated [string list], read lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringList<'a> {
    raw: &'a [u8],
    count: u16,
}

impl<'a> StringList<'a> {
    counted_len!();
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        read_counted(self.raw, self.count, string)
    }
}

/// [string list]: a [short] n, then n [string].
pub fn string_list(i: &[u8]) -> PResult<'_, StringList<'_>> {
    let (i, (raw, count)) = short_counted(i, string)?;
    Ok((i, StringList { raw, count }))
}

/// A validated [string map], read lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringMap<'a> {
    raw: &'a [u8],
    count: u16,
}

fn pair(i: &[u8]) -> PResult<'_, (&str, &str)> {
    let (i, k) = string(i)?;
    let (i, v) = string(i)?;
    Ok((i, (k, v)))
}

impl<'a> StringMap<'a> {
    counted_len!();
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        read_counted(self.raw, self.count, pair)
    }
    /// The value of `key` (exact match; the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        last_value(self.iter(), key)
    }
}

/// [string map]: a [short] n, then n pairs of [string].
pub fn string_map(i: &[u8]) -> PResult<'_, StringMap<'_>> {
    let (i, (raw, count)) = short_counted(i, pair)?;
    Ok((i, StringMap { raw, count }))
}

/// A validated [string multimap], read lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringMultimap<'a> {
    raw: &'a [u8],
    count: u16,
}

fn multi_pair(i: &[u8]) -> PResult<'_, (&str, StringList<'_>)> {
    let (i, k) = string(i)?;
    let (i, v) = string_list(i)?;
    Ok((i, (k, v)))
}

impl<'a> StringMultimap<'a> {
    counted_len!();
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, StringList<'a>)> + 'a {
        read_counted(self.raw, self.count, multi_pair)
    }
    pub fn get(&self, key: &str) -> Option<StringList<'a>> {
        last_value(self.iter(), key)
    }
}

/// [string multimap]: a [short] n, then n pairs of [string] and [string list].
pub fn string_multimap(i: &[u8]) -> PResult<'_, StringMultimap<'_>> {
    let (i, (raw, count)) = short_counted(i, multi_pair)?;
    Ok((i, StringMultimap { raw, count }))
}

/// A validated [bytes map], read lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BytesMap<'a> {
    raw: &'a [u8],
    count: u16,
}

fn bytes_pair(i: &[u8]) -> PResult<'_, (&str, Option<&[u8]>)> {
    let (i, k) = string(i)?;
    let (i, v) = bytes(i)?;
    Ok((i, (k, v)))
}

impl<'a> BytesMap<'a> {
    counted_len!();
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        read_counted(self.raw, self.count, bytes_pair)
    }
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.iter().map(|(k, _)| k)
    }
}

/// [bytes map]: a [short] n, then n pairs of [string] and [bytes].
pub fn bytes_map(i: &[u8]) -> PResult<'_, BytesMap<'_>> {
    let (i, (raw, count)) = short_counted(i, bytes_pair)?;
    Ok((i, BytesMap { raw, count }))
}

/// Skips `n` [value]s, each preceded by a [string] name when `named`.
pub fn skip_values(i: &[u8], n: u16, named: bool) -> PResult<'_, ()> {
    let mut rest = i;
    for _ in 0..n {
        if named {
            rest = string(rest)?.0;
        }
        rest = value(rest)?.0;
    }
    Ok((rest, ()))
}

/// Writers of the notation types, for the encoders.
pub mod write {
    pub fn short(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_be_bytes());
    }
    pub fn int(out: &mut Vec<u8>, v: i32) {
        out.extend_from_slice(&v.to_be_bytes());
    }
    /// [string]; strings longer than 65535 bytes are cut at a character boundary.
    pub fn string(out: &mut Vec<u8>, s: &str) {
        let mut end = s.len().min(usize::from(u16::MAX));
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        short(out, end as u16);
        out.extend_from_slice(s.as_bytes().get(..end).unwrap_or_default());
    }
    pub fn long_string(out: &mut Vec<u8>, s: &str) {
        int(out, s.len() as i32);
        out.extend_from_slice(s.as_bytes());
    }
    /// [bytes]; `None` is null.
    pub fn bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                int(out, b.len() as i32);
                out.extend_from_slice(b);
            }
            None => int(out, -1),
        }
    }
    pub fn short_bytes(out: &mut Vec<u8>, b: &[u8]) {
        let n = b.len().min(usize::from(u16::MAX));
        short(out, n as u16);
        out.extend_from_slice(b.get(..n).unwrap_or_default());
    }
    pub fn string_map(out: &mut Vec<u8>, m: &[(&str, &str)]) {
        short(out, m.len() as u16);
        for (k, v) in m {
            string(out, k);
            string(out, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_maps() {
        let mut b = Vec::new();
        write::string_map(&mut b, &[("CQL_VERSION", "3.4.5"), ("COMPRESSION", "lz4")]);
        let (rest, m) = string_map(&b).unwrap();
        assert!(rest.is_empty());
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("COMPRESSION"), Some("lz4"));
        assert_eq!(m.iter().count(), 2);
        assert!(string_map(&b[..b.len() - 1]).is_err());
        // Invalid UTF-8.
        assert!(string(&[0, 1, 0xff]).is_err());
        assert!(long_string(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn values() {
        assert_eq!(value(&[0xff; 4]).unwrap().1, Value::Null);
        assert_eq!(value(&[0xff, 0xff, 0xff, 0xfe]).unwrap().1, Value::Unset);
        assert!(value(&[0xff, 0xff, 0xff, 0xfd]).is_err());
        assert_eq!(value(&[0, 0, 0, 1, 9]).unwrap().1, Value::Bytes(&[9]));
        assert!(value(&[0, 0, 0, 2, 9]).is_err());
        assert_eq!(bytes(&[0xff; 4]).unwrap().1, None);
    }

    #[test]
    fn huge_counts_fail_without_allocating() {
        assert!(string_list(&[0xff, 0xff, 0, 0]).is_err());
        assert!(bytes_map(&[0xff, 0xff]).is_err());
        assert!(skip_values(&[0, 0, 0, 1], 1000, false).is_err());
    }
}
