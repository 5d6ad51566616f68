//! The CQL lexer, written with `nom`, following Cassandra's `Lexer.g`.
//!
//! - Whitespace is space, tab, `\n`, `\r`. Comments are `-- ...` and `// ...` up to the next
//!   `\n` **or** `\r`, and `/* ... */` (not nested; unterminated is an error). Comments may
//!   stand anywhere between tokens, also between the parts of `ks.table`.
//! - A `--` or `//` comment needs its line end, as in `Lexer.g`
//!   (`COMMENT: ('--' | '//') .* ('\n'|'\r')`): one that runs to the end of the text is an
//!   error for [`Lexer::strict`], which the classifier uses, because Cassandra answers such a
//!   text with a syntax error. [`Lexer::new`] reads it as a comment, for tools that only read
//!   text (masking literals for the audit log), whatever Cassandra would make of it.
//! - Unquoted identifiers are a letter followed by letters, digits and `_`; they fold to lower
//!   case. Quoted identifiers `"..."` keep their case; `""` inside stands for one `"`; they may
//!   contain dots and anything else.
//! - String literals `'...'` with `''` for a quote, and `$$...$$` with no escapes.
//! - Numbers (integers, floats, durations such as `1h30m`), UUIDs, blobs `0x..`.
//! - Punctuation, including `?` and `:name` bind markers.
//!
//! Tokens borrow from the text; [`name`] folds or unescapes only when it changes something.

use std::borrow::Cow;

use nom::branch::alt;
use nom::bytes::complete::{is_not, tag, take_till, take_until, take_while, take_while1};
use nom::character::complete::{char, satisfy};
use nom::combinator::{cut, recognize};
use nom::multi::many0_count;
use nom::sequence::{delimited, pair, preceded, tuple};
use nom::IResult;

/// One token. Text slices borrow from the statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tok<'a> {
    /// An unquoted identifier or keyword, as written (not folded yet).
    Ident(&'a str),
    /// A quoted identifier: the text between the quotes, `""` escapes still in place.
    Quoted(&'a str),
    /// A `'...'` string: the text between the quotes, `''` escapes still in place.
    Str(&'a str),
    /// A `$$...$$` string: the text between the markers.
    Dollar(&'a str),
    /// A number, duration, UUID or blob literal.
    Number(&'a str),
    /// Punctuation: `(`, `)`, `,`, `;`, `.`, `<=`, `!=`, `?`, ...
    Sym(&'a str),
    /// The end of the text.
    End,
}

impl Tok<'_> {
    /// The token as Cassandra's syntax errors show one: `'FORM'`, `';'`, `'<EOF>'`. Long
    /// words are cut at 40 characters, and string literals are never shown (they may hold a
    /// password): `'<string literal>'`.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{}'", truncate(s)),
            Tok::Quoted(s) => format!("'\"{}\"'", truncate(s)),
            Tok::Str(_) | Tok::Dollar(_) => "'<string literal>'".to_string(),
            Tok::Number(s) => format!("'{}'", truncate(s)),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::End => "'<EOF>'".to_string(),
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Folds an unquoted identifier to lower case, borrowing when it is lower case already.
pub fn fold(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Replaces a doubled quote character by one, borrowing when there is none.
pub fn unescape(s: &str, quote: char) -> Cow<'_, str> {
    let doubled: &str = if quote == '"' { "\"\"" } else { "''" };
    if s.contains(doubled) {
        Cow::Owned(s.replace(doubled, &quote.to_string()))
    } else {
        Cow::Borrowed(s)
    }
}

/// The name a token stands for: unquoted folded, quoted unescaped, or `None`.
pub fn name<'a>(tok: Tok<'a>) -> Option<Cow<'a, str>> {
    match tok {
        Tok::Ident(s) => Some(fold(s)),
        Tok::Quoted(s) => Some(unescape(s, '"')),
        _ => None,
    }
}

/// A `--` or `//` comment, without its line end (which is whitespace). At the end of the
/// text the rest is `""`: whether that is allowed is [`Lexer::strict`]'s business.
fn line_comment(i: &str) -> IResult<&str, &str> {
    recognize(pair(
        alt((tag("--"), tag("//"))),
        take_till(|c| c == '\n' || c == '\r'),
    ))(i)
}

fn block_comment(i: &str) -> IResult<&str, &str> {
    recognize(tuple((tag("/*"), cut(take_until("*/")), tag("*/"))))(i)
}

fn quoted_body(i: &str) -> IResult<&str, &str> {
    let (i, s) = recognize(many0_count(alt((is_not("\""), tag("\"\"")))))(i)?;
    let (i, _) = char('"')(i)?;
    if s.is_empty() {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )));
    }
    Ok((i, s))
}

fn quoted_ident(i: &str) -> IResult<&str, Tok<'_>> {
    let (i, s) = preceded(char('"'), cut(quoted_body))(i)?;
    Ok((i, Tok::Quoted(s)))
}

fn string(i: &str) -> IResult<&str, Tok<'_>> {
    let (i, s) = preceded(
        char('\''),
        cut(|i| {
            let (i, s) = recognize(many0_count(alt((is_not("'"), tag("''")))))(i)?;
            let (i, _) = char('\'')(i)?;
            Ok((i, s))
        }),
    )(i)?;
    Ok((i, Tok::Str(s)))
}

fn dollar(i: &str) -> IResult<&str, Tok<'_>> {
    let (i, s) = preceded(
        tag("$$"),
        cut(|i| {
            let (i, s) = take_until("$$")(i)?;
            let (i, _) = tag("$$")(i)?;
            Ok((i, s))
        }),
    )(i)?;
    Ok((i, Tok::Dollar(s)))
}

const SPACE: u8 = 1;
const WORD: u8 = 2;

/// Byte classes: whitespace (space, tab, LF, CR) and identifier characters
/// (ASCII letters, digits, `_`).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = SPACE;
    t[b'\t' as usize] = SPACE;
    t[b'\n' as usize] = SPACE;
    t[b'\r' as usize] = SPACE;
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            t[c] = WORD;
        }
        c += 1;
    }
    t
};

/// An unquoted identifier: a letter, then letters, digits and `_` (ASCII, as in `Lexer.g`).
fn ident(i: &str) -> IResult<&str, Tok<'_>> {
    let b = i.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Alpha,
        )));
    }
    let n = b[1..]
        .iter()
        .position(|c| CLASS[*c as usize] & WORD == 0)
        .map_or(b.len(), |p| p + 1);
    Ok((&i[n..], Tok::Ident(&i[..n])))
}

fn hex(n: usize) -> impl Fn(&str) -> IResult<&str, &str> {
    move |i: &str| {
        let (rest, s) = take_while1(|c: char| c.is_ascii_hexdigit())(i)?;
        if s.len() == n {
            Ok((rest, s))
        } else {
            Err(nom::Err::Error(nom::error::Error::new(
                i,
                nom::error::ErrorKind::HexDigit,
            )))
        }
    }
}

fn uuid(i: &str) -> IResult<&str, Tok<'_>> {
    let (rest, s) = recognize(tuple((
        hex(8),
        char('-'),
        hex(4),
        char('-'),
        hex(4),
        char('-'),
        hex(4),
        char('-'),
        hex(12),
    )))(i)?;
    Ok((rest, Tok::Number(s)))
}

/// Integers, floats (`1.5e-3`), durations (`1h30m`), blobs (`0xcafe`): a digit, then letters,
/// digits and `_`, an optional fraction, an optional signed exponent.
fn number(i: &str) -> IResult<&str, Tok<'_>> {
    let word = |i| take_while(|c: char| c.is_ascii_alphanumeric() || c == '_')(i);
    let (mut rest, _) = pair(satisfy(|c| c.is_ascii_digit()), word)(i)?;
    if let Ok((r, _)) = delimited(
        char::<_, nom::error::Error<&str>>('.'),
        satisfy(|c| c.is_ascii_digit()),
        word,
    )(rest)
    {
        rest = r;
    }
    let consumed = &i[..i.len() - rest.len()];
    if consumed.ends_with(['e', 'E']) {
        if let Ok((r, _)) = pair(
            alt((char::<_, nom::error::Error<&str>>('+'), char('-'))),
            take_while1(|c: char| c.is_ascii_digit()),
        )(rest)
        {
            rest = r;
        }
    }
    Ok((rest, Tok::Number(&i[..i.len() - rest.len()])))
}

fn symbol(i: &str) -> IResult<&str, Tok<'_>> {
    let b = i.as_bytes();
    let two = b.len() >= 2 && b[1] == b'=' && matches!(b[0], b'<' | b'>' | b'!');
    if two {
        return Ok((&i[2..], Tok::Sym(&i[..2])));
    }
    match b.first() {
        Some(
            b'(' | b')' | b',' | b';' | b'.' | b'*' | b'=' | b'<' | b'>' | b'+' | b'-' | b'['
            | b']' | b'{' | b'}' | b':' | b'?' | b'/' | b'%',
        ) => Ok((&i[1..], Tok::Sym(&i[..1]))),
        _ => Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::OneOf,
        ))),
    }
}

/// A lexing error, with the byte offset where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    pub offset: usize,
    pub message: String,
}

/// The reason given for a `--` or `//` comment that runs to the end of the text.
pub const COMMENT_WITHOUT_LINE_END: &str =
    "comment runs to the end of the statement without a line end";

/// A cursor over the tokens of a text (`Copy`: cloning is free lookahead).
#[derive(Clone, Copy, Debug)]
pub struct Lexer<'a> {
    src: &'a str,
    rest: &'a str,
    start: usize,
    /// Whether a `--` / `//` comment must end with `\n` or `\r`, as in Cassandra.
    strict: bool,
}

impl<'a> Lexer<'a> {
    /// A lexer that reads a `--` or `//` comment running to the end of the text as a
    /// comment: for reading text (the audit log's masking), not for deciding on it.
    pub fn new(src: &'a str) -> Lexer<'a> {
        Lexer {
            src,
            rest: src,
            start: 0,
            strict: false,
        }
    }

    /// A lexer with Cassandra's rules throughout: a `--` or `//` comment without a line end
    /// is an error ([`COMMENT_WITHOUT_LINE_END`]), as Cassandra rejects such a text.
    pub fn strict(src: &'a str) -> Lexer<'a> {
        Lexer {
            strict: true,
            ..Lexer::new(src)
        }
    }

    /// Byte offset of the next unread character.
    pub fn offset(&self) -> usize {
        self.src.len() - self.rest.len()
    }

    fn error(&self, at: &str, what: &str) -> LexError {
        LexError {
            offset: self.src.len() - at.len(),
            message: what.to_string(),
        }
    }

    /// Byte offset where the token last returned by [`Lexer::next_token`] starts.
    pub fn token_start(&self) -> usize {
        self.start
    }

    /// The next token, skipping whitespace and comments.
    ///
    /// Dispatches on the first byte to one recognizer, so that the common tokens (words,
    /// punctuation, `?`) cost a few comparisons each.
    pub fn next_token(&mut self) -> Result<Tok<'a>, LexError> {
        let mut rest = self.rest;
        loop {
            let b = rest.as_bytes();
            let ws = b
                .iter()
                .position(|c| CLASS[*c as usize] & SPACE == 0)
                .unwrap_or(b.len());
            rest = &rest[ws..];
            let b = rest.as_bytes();
            if b.len() < 2 {
                break;
            }
            let comment = match (b[0], b[1]) {
                (b'-', b'-') | (b'/', b'/') => match line_comment(rest) {
                    Ok(("", _)) if self.strict => {
                        return Err(self.error(rest, COMMENT_WITHOUT_LINE_END))
                    }
                    other => other,
                },
                (b'/', b'*') => block_comment(rest),
                _ => break,
            };
            match comment {
                Ok((after, _)) => rest = after,
                Err(_) => return Err(self.error(rest, "unterminated /* comment")),
            }
        }
        self.rest = rest;
        self.start = self.offset();
        let Some(&first) = rest.as_bytes().first() else {
            return Ok(Tok::End);
        };
        let result = match first {
            b'"' => quoted_ident(rest),
            b'\'' => string(rest),
            b'$' => dollar(rest),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' if maybe_uuid(rest) => {
                uuid(rest).or_else(|_| word_or_number(rest))
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => word_or_number(rest),
            _ => symbol(rest),
        };
        match result {
            Ok((after, tok)) => {
                self.rest = after;
                Ok(tok)
            }
            Err(_) => {
                let what = match first {
                    b'"' => "unterminated or empty quoted name".to_string(),
                    b'\'' => "unterminated string literal".to_string(),
                    b'$' if rest.starts_with("$$") => "unterminated $$ string".to_string(),
                    _ => format!(
                        "no viable alternative at character '{}'",
                        rest.chars().next().unwrap_or('?').escape_debug()
                    ),
                };
                Err(self.error(rest, &what))
            }
        }
    }
}

/// Whether `s` may start with a UUID literal (8 hex digits and a dash).
fn maybe_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 36 && b[8] == b'-' && b[..8].iter().all(u8::is_ascii_hexdigit)
}

fn word_or_number(i: &str) -> IResult<&str, Tok<'_>> {
    if i.as_bytes()[0].is_ascii_digit() {
        number(i)
    } else {
        ident(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok<'_>> {
        let mut l = Lexer::new(s);
        let mut v = Vec::new();
        loop {
            let t = l.next_token().unwrap();
            if t == Tok::End {
                return v;
            }
            v.push(t);
        }
    }

    #[test]
    fn identifiers_and_folding() {
        assert_eq!(
            toks("Quoted_KS.Orders"),
            vec![Tok::Ident("Quoted_KS"), Tok::Sym("."), Tok::Ident("Orders")]
        );
        assert_eq!(fold("Quoted_KS"), "quoted_ks");
        assert!(matches!(fold("users"), Cow::Borrowed(_)));
        assert_eq!(toks(r#""a.b""#), vec![Tok::Quoted("a.b")]);
        assert_eq!(toks(r#""say ""hi""""#), vec![Tok::Quoted(r#"say ""hi"""#)]);
        assert_eq!(unescape(r#"say ""hi"""#, '"'), r#"say "hi""#);
        assert_eq!(name(Tok::Quoted("MiXed")).unwrap(), "MiXed");
        assert_eq!(name(Tok::Ident("MiXed")).unwrap(), "mixed");
    }

    #[test]
    fn comments() {
        assert_eq!(toks("a -- x\rb"), vec![Tok::Ident("a"), Tok::Ident("b")]);
        assert_eq!(toks("a // x\nb"), vec![Tok::Ident("a"), Tok::Ident("b")]);
        assert_eq!(toks("a -- ; DROP"), vec![Tok::Ident("a")]);
        assert_eq!(
            toks("shop/**/./**/users"),
            vec![Tok::Ident("shop"), Tok::Sym("."), Tok::Ident("users")]
        );
        assert_eq!(
            toks("a /* ; \n */ b"),
            vec![Tok::Ident("a"), Tok::Ident("b")]
        );
        let mut l = Lexer::new("a /* never closed");
        l.next_token().unwrap();
        let e = l.next_token().unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("comment"));
    }

    #[test]
    fn strict_line_comments_need_a_line_end() {
        fn strict(s: &str) -> Result<Vec<Tok<'_>>, LexError> {
            let mut l = Lexer::strict(s);
            let mut v = Vec::new();
            loop {
                match l.next_token()? {
                    Tok::End => return Ok(v),
                    t => v.push(t),
                }
            }
        }
        for ok in [
            "a -- x\n",
            "a // x\r",
            "a --\r\nb",
            "-- x\nb",
            "a /* -- */",
            "a - -",
        ] {
            assert!(strict(ok).is_ok(), "{ok:?}");
        }
        assert_eq!(
            strict("a -- x\nb").unwrap(),
            [Tok::Ident("a"), Tok::Ident("b")]
        );
        for (bad, offset) in [("a -- x", 2), ("a //", 2), ("--", 0), ("a\n  // b;", 4)] {
            let e = strict(bad).unwrap_err();
            assert_eq!(
                (e.offset, e.message.as_str()),
                (offset, COMMENT_WITHOUT_LINE_END)
            );
        }
        // The reading lexer takes such a comment as a comment.
        assert_eq!(toks("a -- x"), [Tok::Ident("a")]);
        // Both refuse an unterminated block comment.
        assert!(strict("a /* x").is_err());
    }

    #[test]
    fn literals() {
        assert_eq!(toks("'it''s; DROP'"), vec![Tok::Str("it''s; DROP")]);
        assert_eq!(toks("$$ a; b $$"), vec![Tok::Dollar(" a; b ")]);
        assert_eq!(toks("''"), vec![Tok::Str("")]);
        assert_eq!(
            toks("1.5e-3 42 1h30m 0xCAFE"),
            vec![
                Tok::Number("1.5e-3"),
                Tok::Number("42"),
                Tok::Number("1h30m"),
                Tok::Number("0xCAFE")
            ]
        );
        assert_eq!(
            toks("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            vec![Tok::Number("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]
        );
        assert_eq!(
            toks("a<=?,:b!=c"),
            vec![
                Tok::Ident("a"),
                Tok::Sym("<="),
                Tok::Sym("?"),
                Tok::Sym(","),
                Tok::Sym(":"),
                Tok::Ident("b"),
                Tok::Sym("!="),
                Tok::Ident("c")
            ]
        );
    }

    #[test]
    fn errors() {
        for bad in ["'open", "\"open", "$$ open", "#", "a \u{e9}", "\"\""] {
            let mut l = Lexer::new(bad);
            let mut failed = false;
            for _ in 0..4 {
                match l.next_token() {
                    Err(_) => {
                        failed = true;
                        break;
                    }
                    Ok(Tok::End) => break,
                    Ok(_) => {}
                }
            }
            assert!(failed, "{bad:?} should not lex");
        }
        let mut l = Lexer::new("a #");
        l.next_token().unwrap();
        assert_eq!(
            l.next_token().unwrap_err().message,
            "no viable alternative at character '#'"
        );
        let mut l = Lexer::new("\u{0}");
        assert_eq!(
            l.next_token().unwrap_err().message,
            "no viable alternative at character '\\0'"
        );
    }
}
