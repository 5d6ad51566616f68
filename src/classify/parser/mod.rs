//! A recursive-descent parser over the tokens of [`super::lexer`].
//!
//! The statement's head (the parts that name keyspaces, tables, functions, roles and decide
//! the kind) is parsed exactly; expressions (selectors, WHERE clauses, values, table options)
//! are scanned with balanced brackets, looking only for function calls, bind markers and the
//! keywords that end them. Nothing recurses on the input: brackets are counted, so nesting
//! is bounded by [`MAX_NESTING`] without stack growth.

use std::borrow::Cow;

use super::functions::is_native;
use super::lexer::{self, Lexer, Tok};
use super::permission::Permission;
use super::resource::Resource;
use super::statement::{Flags, Kind, Rejection, Statement};

mod dcl;
mod ddl;
mod describe;
mod dml;
mod types;

/// Deepest bracket nesting accepted in an expression or type.
pub const MAX_NESTING: u32 = 64;

/// Most distinct user-defined functions one statement may call (keeps the de-duplication of
/// needs cheap; a statement beyond it is unparsed).
pub const MAX_CALLS: usize = 64;

/// Most distinct needs of a batch (the union of its children's).
pub const MAX_BATCH_NEEDS: usize = 4096;

/// The reason given when a statement needs a keyspace and neither it nor the connection
/// names one: Cassandra's own (an invalid request).
pub const NO_KEYSPACE: &str =
    "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename";

/// Keywords the CQL reference lists as reserved: never names unless quoted.
const RESERVED: &[&str] = &[
    "add",
    "allow",
    "alter",
    "and",
    "apply",
    "asc",
    "authorize",
    "batch",
    "begin",
    "by",
    "columnfamily",
    "create",
    "delete",
    "desc",
    "describe",
    "drop",
    "entries",
    "execute",
    "from",
    "full",
    "grant",
    "if",
    "in",
    "index",
    "infinity",
    "insert",
    "into",
    "is",
    "keyspace",
    "limit",
    "materialized",
    "mbean",
    "mbeans",
    "modify",
    "nan",
    "norecursive",
    "not",
    "null",
    "of",
    "on",
    "or",
    "order",
    "primary",
    "rename",
    "replace",
    "revoke",
    "schema",
    "select",
    "set",
    "table",
    "to",
    "token",
    "truncate",
    "unlogged",
    "unset",
    "update",
    "use",
    "using",
    "view",
    "where",
    "with",
];

/// Packs a word of at most 15 ASCII bytes, lower-cased, into an integer key (0 when it does
/// not fit), so keyword tests are integer comparisons.
pub const fn word_key(word: &[u8]) -> u128 {
    if word.is_empty() || word.len() > 15 {
        return 0;
    }
    let mut key: u128 = 0;
    let mut i = 0;
    while i < word.len() {
        key = (key << 8) | word[i].to_ascii_lowercase() as u128;
        i += 1;
    }
    key | ((word.len() as u128) << 120)
}

/// [`RESERVED`] as sorted [`word_key`]s, computed at compile time.
const RESERVED_KEYS: [u128; RESERVED.len()] = {
    let mut keys = [0u128; RESERVED.len()];
    let mut i = 0;
    while i < RESERVED.len() {
        keys[i] = word_key(RESERVED[i].as_bytes());
        i += 1;
    }
    // Insertion sort (const context).
    let mut j = 1;
    while j < keys.len() {
        let mut k = j;
        while k > 0 && keys[k - 1] > keys[k] {
            let t = keys[k];
            keys[k] = keys[k - 1];
            keys[k - 1] = t;
            k -= 1;
        }
        j += 1;
    }
    keys
};

/// Whether an unquoted word is a reserved keyword (case-insensitive).
pub fn is_reserved(word: &str) -> bool {
    let key = word_key(word.as_bytes());
    key != 0 && RESERVED_KEYS.binary_search(&key).is_ok()
}

/// Why a text did not classify: how Cassandra would answer it, where, and why.
#[derive(Debug)]
pub struct Fail {
    pub rejection: Rejection,
    /// The byte offset in the text where it stops being CQL (syntax errors found at a
    /// token), shown as Cassandra's `line L:C`.
    pub at: Option<usize>,
    pub message: String,
}

impl Fail {
    /// A syntax error at byte offset `at`.
    pub fn syntax_at(at: usize, message: impl Into<String>) -> Fail {
        Fail {
            rejection: Rejection::Syntax,
            at: Some(at),
            message: message.into(),
        }
    }

    /// A syntax error Cassandra reports without a position (its parser's recognition
    /// errors, such as a permission that does not apply to a resource).
    pub fn syntax(message: impl Into<String>) -> Fail {
        Fail {
            rejection: Rejection::Syntax,
            at: None,
            message: message.into(),
        }
    }

    /// CQL that Cassandra refuses as an invalid request.
    pub fn invalid(message: impl Into<String>) -> Fail {
        Fail {
            rejection: Rejection::Invalid,
            at: None,
            message: message.into(),
        }
    }

    /// CQL beyond what the classifier decides.
    pub fn unsupported(message: impl Into<String>) -> Fail {
        Fail {
            rejection: Rejection::Unsupported,
            at: None,
            message: message.into(),
        }
    }

    /// The reason for a person: `line L:C message` when the position is known, with
    /// Cassandra's (ANTLR's) numbering: lines from 1, counted at `\n`; columns from 0, in
    /// characters.
    pub fn reason(&self, text: &str) -> String {
        match self.at {
            Some(at) => {
                let (line, column) = line_column(text, at);
                format!("line {line}:{column} {}", self.message)
            }
            None => self.message.clone(),
        }
    }
}

/// The line (from 1) and column (from 0, in characters) of byte offset `at` in `text`.
pub fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = 1 + before.bytes().filter(|&b| b == b'\n').count();
    let column = before.get(line_start..).map_or(0, |l| l.chars().count());
    (line, column)
}

pub type PResult<T> = Result<T, Fail>;

pub struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<(Tok<'a>, usize)>,
    /// The connection's current keyspace.
    pub current: Option<&'a str>,
}

impl<'a> Parser<'a> {
    pub fn new(text: &'a str, current: Option<&'a str>) -> Parser<'a> {
        Parser {
            lex: Lexer::strict(text),
            peeked: None,
            current: current.filter(|k| !k.is_empty()),
        }
    }

    fn lex_next(lex: &mut Lexer<'a>) -> PResult<(Tok<'a>, usize)> {
        match lex.next_token() {
            Ok(t) => Ok((t, lex.token_start())),
            Err(e) => Err(Fail::syntax_at(e.offset, e.message)),
        }
    }

    /// The next token, not consumed.
    pub fn peek(&mut self) -> PResult<Tok<'a>> {
        if let Some((t, _)) = self.peeked {
            return Ok(t);
        }
        let t = Self::lex_next(&mut self.lex)?;
        self.peeked = Some(t);
        Ok(t.0)
    }

    /// The token after the next one, not consumed (`End` when it does not lex).
    pub fn peek2(&mut self) -> PResult<Tok<'a>> {
        self.peek()?;
        let mut l = self.lex;
        Ok(Self::lex_next(&mut l).map(|t| t.0).unwrap_or(Tok::End))
    }

    /// A lexer positioned after the next token, for longer lookahead.
    pub fn lookahead(&mut self) -> PResult<Lexer<'a>> {
        self.peek()?;
        Ok(self.lex)
    }

    /// Consumes and returns the next token.
    pub fn bump(&mut self) -> PResult<Tok<'a>> {
        let t = self.peek()?;
        self.peeked = None;
        Ok(t)
    }

    /// Byte offset of the next token (peeked or not).
    fn position(&self) -> usize {
        self.peeked.map_or(self.lex.offset(), |(_, at)| at)
    }

    /// A syntax error at the next token, worded as Cassandra's parser words one:
    /// `mismatched input 'FORM' expecting FROM`.
    pub fn unexpected(&mut self, wanted: &str) -> Fail {
        let found = match self.peek() {
            Ok(t) => t.describe(),
            Err(e) => return e,
        };
        Fail::syntax_at(
            self.position(),
            format!("mismatched input {found} expecting {wanted}"),
        )
    }

    pub fn at_kw(&mut self, kw: &str) -> PResult<bool> {
        Ok(is_kw(self.peek()?, kw))
    }

    pub fn eat_kw(&mut self, kw: &str) -> PResult<bool> {
        if self.at_kw(kw)? {
            self.peeked = None;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.eat_kw(kw)? {
            Ok(())
        } else {
            Err(self.unexpected(&kw.to_ascii_uppercase()))
        }
    }

    pub fn eat_sym(&mut self, sym: &str) -> PResult<bool> {
        if self.peek()? == Tok::Sym(sym) {
            self.peeked = None;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub fn expect_sym(&mut self, sym: &str) -> PResult<()> {
        if self.eat_sym(sym)? {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{sym}'")))
        }
    }

    /// Whether the next token can be a name (a non-reserved word or a quoted name).
    pub fn at_name(&mut self) -> PResult<bool> {
        Ok(is_name(self.peek()?))
    }

    /// A name: an unquoted non-reserved word (folded) or a quoted name (unescaped).
    pub fn ident(&mut self) -> PResult<Cow<'a, str>> {
        let t = self.peek()?;
        if is_name(t) {
            self.peeked = None;
            if let Some(n) = lexer::name(t) {
                return Ok(n);
            }
        }
        Err(self.unexpected("a name"))
    }

    /// `name` or `keyspace.name`.
    pub fn qualified(&mut self) -> PResult<(Option<Cow<'a, str>>, Cow<'a, str>)> {
        let first = self.ident()?;
        if self.eat_sym(".")? {
            let second = self.ident()?;
            Ok((Some(first), second))
        } else {
            Ok((None, first))
        }
    }

    /// The keyspace named, or else the current one.
    pub fn keyspace_or_current(&self, ks: Option<Cow<'a, str>>) -> PResult<Cow<'a, str>> {
        match ks {
            Some(k) => Ok(k),
            None => self
                .current
                .map(Cow::Borrowed)
                .ok_or_else(|| Fail::invalid(NO_KEYSPACE)),
        }
    }

    /// `[keyspace.]table`, resolved against the current keyspace.
    pub fn table_name(&mut self) -> PResult<(Cow<'a, str>, Cow<'a, str>)> {
        let (ks, t) = self.qualified()?;
        Ok((self.keyspace_or_current(ks)?, t))
    }

    /// A role name: a name, or a string literal (which keeps its case).
    pub fn role_name(&mut self) -> PResult<Cow<'a, str>> {
        match self.peek()? {
            Tok::Str(s) => {
                self.peeked = None;
                Ok(lexer::unescape(s, '\''))
            }
            Tok::Dollar(s) => {
                self.peeked = None;
                Ok(Cow::Borrowed(s))
            }
            _ => self.ident().map_err(|_| self.unexpected_role()),
        }
    }

    fn unexpected_role(&mut self) -> Fail {
        self.unexpected("a role name")
    }

    /// `IF NOT EXISTS` (DDL), setting [`Flags::IF_EXISTS`].
    pub fn if_not_exists(&mut self, st: &mut Statement<'a>) -> PResult<()> {
        if self.eat_kw("if")? {
            self.expect_kw("not")?;
            self.expect_kw("exists")?;
            st.flags |= Flags::IF_EXISTS;
        }
        Ok(())
    }

    /// `IF EXISTS` (DDL), setting [`Flags::IF_EXISTS`].
    pub fn if_exists(&mut self, st: &mut Statement<'a>) -> PResult<()> {
        if self.eat_kw("if")? {
            self.expect_kw("exists")?;
            st.flags |= Flags::IF_EXISTS;
        }
        Ok(())
    }

    /// Scans an expression list up to (not including) one of the `stops` keywords at bracket
    /// depth 0, a `;`, a closing bracket at depth 0, or the end. With `calls`, every function
    /// call found adds an EXECUTE need unless it is native. Returns how many tokens it took.
    pub fn scan(&mut self, st: &mut Statement<'a>, stops: &[&str], calls: bool) -> PResult<usize> {
        let mut depth: u32 = 0;
        let mut braces: u32 = 0;
        let mut count = 0usize;
        // The (possibly qualified) name just seen, and a name just followed by a dot.
        // Raw tokens: names are resolved (folded, unescaped) only for a call.
        let mut last: Option<(Option<Tok<'a>>, Tok<'a>)> = None;
        let mut dotted: Option<Tok<'a>> = None;
        loop {
            let t = self.peek()?;
            match t {
                Tok::End | Tok::Sym(";") if depth > 0 => {
                    return Err(self.unexpected("a closing bracket"))
                }
                Tok::End | Tok::Sym(";") => return Ok(count),
                Tok::Sym(")") | Tok::Sym("]") | Tok::Sym("}") if depth == 0 => return Ok(count),
                Tok::Ident(w) if depth == 0 && stops.iter().any(|s| w.eq_ignore_ascii_case(s)) => {
                    return Ok(count)
                }
                _ => {}
            }
            self.peeked = None;
            count += 1;
            let mut keep = None;
            let mut keep_dot = None;
            match t {
                Tok::Sym("(") | Tok::Sym("[") | Tok::Sym("{") => {
                    if t == Tok::Sym("(") && calls {
                        if let Some((ks, name)) = last.take() {
                            if let Some(name) = lexer::name(name) {
                                self.call(st, ks.and_then(lexer::name), name)?;
                            }
                        }
                    }
                    if t == Tok::Sym("{") {
                        braces += 1;
                    }
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(Fail::unsupported(format!(
                            "brackets nested deeper than {MAX_NESTING} levels"
                        )));
                    }
                }
                Tok::Sym(")") | Tok::Sym("]") | Tok::Sym("}") => {
                    if t == Tok::Sym("}") {
                        braces = braces.saturating_sub(1);
                    }
                    depth -= 1;
                }
                Tok::Sym(".") => {
                    if let Some((None, n)) = last.take() {
                        keep_dot = Some(n);
                    }
                }
                Tok::Sym("?") => st.flags |= Flags::BIND_MARKERS,
                Tok::Sym(":") if braces == 0 && is_name(self.peek()?) => {
                    st.flags |= Flags::BIND_MARKERS;
                }
                Tok::Ident(w) if calls && (!is_reserved(w) || w.eq_ignore_ascii_case("token")) => {
                    keep = Some((dotted.take(), t))
                }
                Tok::Quoted(_) if calls => keep = Some((dotted.take(), t)),
                _ => {}
            }
            last = keep;
            dotted = keep_dot;
        }
    }

    /// Records a function call: EXECUTE on it unless it is a native function.
    fn call(
        &mut self,
        st: &mut Statement<'a>,
        ks: Option<Cow<'a, str>>,
        name: Cow<'a, str>,
    ) -> PResult<()> {
        match ks.as_deref() {
            Some("system") => return Ok(()),
            None if is_native(&name) => return Ok(()),
            _ => {}
        }
        if st.needs.len() >= MAX_CALLS {
            return Err(Fail::unsupported(format!(
                "more than {MAX_CALLS} distinct functions called in one statement"
            )));
        }
        let keyspace = self.keyspace_or_current(ks).map_err(|_| {
            Fail::invalid(format!(
                "function {name} is not a native function, and no keyspace has been specified"
            ))
        })?;
        st.need(
            Permission::Execute,
            Resource::Function {
                keyspace,
                name,
                args: None,
            },
        );
        Ok(())
    }

    /// Skips the rest of the statement (balanced brackets), setting [`Flags::MASKING`] on
    /// `MASKED WITH` / `DROP MASKED` when `masking`.
    pub fn skip_rest(&mut self, st: &mut Statement<'a>, masking: bool) -> PResult<()> {
        let mut depth: u32 = 0;
        let mut prev_drop = false;
        loop {
            let t = self.peek()?;
            match t {
                Tok::End | Tok::Sym(";") if depth > 0 => {
                    return Err(self.unexpected("a closing bracket"))
                }
                Tok::End | Tok::Sym(";") => return Ok(()),
                Tok::Sym(")") | Tok::Sym("]") | Tok::Sym("}") if depth == 0 => {
                    return Err(self.unexpected("the end of the statement"))
                }
                _ => {}
            }
            self.peeked = None;
            match t {
                Tok::Sym("(") | Tok::Sym("[") | Tok::Sym("{") => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Err(Fail::unsupported(format!(
                            "brackets nested deeper than {MAX_NESTING} levels"
                        )));
                    }
                }
                Tok::Sym(")") | Tok::Sym("]") | Tok::Sym("}") => depth -= 1,
                Tok::Sym("?") => st.flags |= Flags::BIND_MARKERS,
                Tok::Ident(w)
                    if masking
                        && w.eq_ignore_ascii_case("masked")
                        && (prev_drop || self.at_kw("with")?) =>
                {
                    st.flags |= Flags::MASKING;
                }
                _ => {}
            }
            prev_drop = is_kw(t, "drop");
        }
    }

    /// An optional `;`, then the end of the text.
    pub fn expect_end(&mut self) -> PResult<()> {
        let semi = self.eat_sym(";")?;
        match self.peek()? {
            Tok::End => Ok(()),
            found if semi => Err(Fail::syntax_at(
                self.position(),
                format!(
                    "mismatched input {} expecting <EOF> (more than one statement in one text)",
                    found.describe()
                ),
            )),
            _ => Err(self.unexpected("the end of the statement")),
        }
    }

    /// Parses one statement (without the final `;`).
    pub fn statement(&mut self) -> PResult<Statement<'a>> {
        let t = self.peek()?;
        let word = match t {
            Tok::Ident(w) => w,
            Tok::End => return Err(Fail::syntax_at(self.position(), "empty statement")),
            _ => return Err(self.no_viable_alternative()),
        };
        const fn k(w: &str) -> u128 {
            word_key(w.as_bytes())
        }
        const SELECT: u128 = k("select");
        const INSERT: u128 = k("insert");
        const UPDATE: u128 = k("update");
        const DELETE: u128 = k("delete");
        const BEGIN: u128 = k("begin");
        const TRUNCATE: u128 = k("truncate");
        const USE: u128 = k("use");
        const CREATE: u128 = k("create");
        const ALTER: u128 = k("alter");
        const DROP: u128 = k("drop");
        const GRANT: u128 = k("grant");
        const REVOKE: u128 = k("revoke");
        const LIST: u128 = k("list");
        const ADD: u128 = k("add");
        const DESCRIBE: u128 = k("describe");
        const DESC: u128 = k("desc");
        match word_key(word.as_bytes()) {
            SELECT => dml::select(self),
            INSERT => dml::insert(self),
            UPDATE => dml::update(self),
            DELETE => dml::delete(self),
            BEGIN => dml::batch(self),
            TRUNCATE => dml::truncate(self),
            USE => dml::use_keyspace(self),
            CREATE => ddl::create(self),
            ALTER => ddl::alter(self),
            DROP => ddl::drop(self),
            GRANT | REVOKE => dcl::grant_revoke(self),
            LIST => dcl::list(self),
            ADD => dcl::add_identity(self),
            DESCRIBE | DESC => describe::describe(self),
            _ => Err(self.no_viable_alternative()),
        }
    }

    /// Cassandra's syntax error for a token no rule starts with:
    /// `no viable alternative at input 'SELEKT'`.
    fn no_viable_alternative(&mut self) -> Fail {
        match self.peek() {
            Ok(t) => Fail::syntax_at(
                self.position(),
                format!("no viable alternative at input {}", t.describe()),
            ),
            Err(e) => e,
        }
    }
}

/// Whether a token is the keyword `kw` (lower case), in any case.
pub fn is_kw(t: Tok<'_>, kw: &str) -> bool {
    matches!(t, Tok::Ident(w) if w.eq_ignore_ascii_case(kw))
}

/// Whether a token can be a name.
pub fn is_name(t: Tok<'_>) -> bool {
    match t {
        Tok::Ident(w) => !is_reserved(w),
        Tok::Quoted(_) => true,
        _ => false,
    }
}

/// A data resource for a table.
pub fn table_resource<'a>(ks: &Cow<'a, str>, t: &Cow<'a, str>) -> Resource<'a> {
    Resource::Table {
        keyspace: ks.clone(),
        table: t.clone(),
    }
}

/// A statement of `kind` that concerns `ks.t`.
pub fn on_table<'a>(kind: Kind, ks: Cow<'a, str>, t: Cow<'a, str>) -> Statement<'a> {
    let mut st = Statement::new(kind);
    st.keyspace = Some(ks);
    st.table = Some(t);
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_sorted_and_case_insensitive() {
        assert!(RESERVED.windows(2).all(|w| w[0] < w[1]));
        assert!(is_reserved("SELECT"));
        assert!(is_reserved("From"));
        assert!(!is_reserved("key"));
        assert!(!is_reserved("columnfamilyx"));
        assert!(!is_reserved("type"));
    }

    #[test]
    fn positions_are_antlr_lines_and_columns() {
        let text = "SELECT *\r\n  FROM é.t\nWHERE";
        assert_eq!(line_column(text, 0), (1, 0));
        assert_eq!(line_column(text, 7), (1, 7));
        // Lines end at `\n` (a `\r` before it is in the line); columns count characters.
        assert_eq!(line_column(text, 12), (2, 2));
        let e = text.find('é').unwrap();
        assert_eq!(line_column(text, e + 'é'.len_utf8()), (2, 8));
        assert_eq!(line_column(text, text.len()), (3, 5));
        // Out of range or inside a character: never a panic.
        assert_eq!(line_column(text, text.len() + 10), (3, 5));
        let _ = line_column(text, e + 1);
        assert_eq!(
            Fail::syntax_at(12, "mismatched input 'FROM' expecting x").reason(text),
            "line 2:2 mismatched input 'FROM' expecting x"
        );
        assert_eq!(Fail::invalid(NO_KEYSPACE).reason(text), NO_KEYSPACE);
    }
}
