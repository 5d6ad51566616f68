//! A lexer and recursive-descent parser for the CQL subset the server executes.

use crate::types::{parse_uuid, ColType};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Identifier or keyword; `quoted` identifiers keep their case.
    Ident(String, bool),
    Str(String),
    Int(String),
    Float(String),
    Uuid([u8; 16]),
    Blob(Vec<u8>),
    QMark,
    /// `:name` bind marker.
    Named(String),
    Sym(&'static str),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    text: String,
    line: usize,
    col: usize,
}

/// A syntax error, already worded like Cassandra's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

fn lex(input: &str) -> Result<Vec<Token>, SyntaxError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut line_start = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i - line_start;
        if c == '\n' {
            line += 1;
            i += 1;
            line_start = i;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // comments
        if (c == '-' && chars.get(i + 1) == Some(&'-'))
            || (c == '/' && chars.get(i + 1) == Some(&'/'))
        {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                if chars[i] == '\n' {
                    line += 1;
                    line_start = i + 1;
                }
                i += 1;
            }
            i += 2;
            continue;
        }
        let start = i;
        let tok = if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(SyntaxError(format!(
                            "line {}:{} mismatched character '<EOF>' expecting '''",
                            line,
                            i - line_start
                        )))
                    }
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            Tok::Str(s)
        } else if c == '$' && chars.get(i + 1) == Some(&'$') {
            let mut s = String::new();
            i += 2;
            loop {
                if i + 1 >= chars.len() {
                    return Err(SyntaxError(format!(
                        "line {}:{} mismatched character '<EOF>' expecting '$'",
                        line,
                        i - line_start
                    )));
                }
                if chars[i] == '$' && chars[i + 1] == '$' {
                    i += 2;
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            Tok::Str(s)
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(SyntaxError(format!(
                            "line {}:{} mismatched character '<EOF>' expecting '\"'",
                            line,
                            i - line_start
                        )))
                    }
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        s.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            Tok::Ident(s, true)
        } else if c == '0' && matches!(chars.get(i + 1), Some('x') | Some('X')) {
            i += 2;
            let hs = i;
            while i < chars.len() && chars[i].is_ascii_hexdigit() {
                i += 1;
            }
            let hex: String = chars[hs..i].iter().collect();
            if !hex.len().is_multiple_of(2) {
                return Err(SyntaxError(format!(
                    "line {}:{} no viable alternative at character '{}'",
                    line,
                    i - line_start,
                    chars.get(i).copied().unwrap_or(' ')
                )));
            }
            let bytes = (0..hex.len() / 2)
                .map(|k| u8::from_str_radix(&hex[2 * k..2 * k + 2], 16).unwrap_or(0))
                .collect();
            Tok::Blob(bytes)
        } else if c.is_ascii_hexdigit() && looks_like_uuid(&chars[i..]) {
            let s: String = chars[i..i + 36].iter().collect();
            i += 36;
            match parse_uuid(&s) {
                Some(u) => Tok::Uuid(u),
                None => return Err(SyntaxError(format!("line {line}:{col} invalid uuid"))),
            }
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            i += 1;
            let mut float = false;
            while i < chars.len() {
                let d = chars[i];
                if d.is_ascii_digit() {
                    i += 1;
                } else if d == '.' && !float && chars.get(i + 1).is_some_and(|x| x.is_ascii_digit())
                {
                    float = true;
                    i += 1;
                } else if (d == 'e' || d == 'E')
                    && chars
                        .get(i + 1)
                        .is_some_and(|x| x.is_ascii_digit() || *x == '-' || *x == '+')
                {
                    float = true;
                    i += 2;
                } else {
                    break;
                }
            }
            let s: String = chars[start..i].iter().collect();
            if float {
                Tok::Float(s)
            } else {
                Tok::Int(s)
            }
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            Tok::Ident(s.to_lowercase(), false)
        } else if c == '?' {
            i += 1;
            Tok::QMark
        } else if c == ':'
            && chars
                .get(i + 1)
                .is_some_and(|x| x.is_alphabetic() || *x == '_')
        {
            i += 1;
            let ns = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            Tok::Named(chars[ns..i].iter().collect::<String>().to_lowercase())
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let sym: &'static str = match two.as_str() {
                "<=" => "<=",
                ">=" => ">=",
                "!=" => "!=",
                _ => match c {
                    '(' => "(",
                    ')' => ")",
                    ',' => ",",
                    ';' => ";",
                    '.' => ".",
                    '*' => "*",
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    '{' => "{",
                    '}' => "}",
                    '[' => "[",
                    ']' => "]",
                    ':' => ":",
                    '+' => "+",
                    '-' => "-",
                    _ => {
                        return Err(SyntaxError(format!(
                            "line {line}:{col} no viable alternative at character '{c}'"
                        )))
                    }
                },
            };
            i += sym.len();
            Tok::Sym(sym)
        };
        out.push(Token {
            tok,
            text: chars[start..i].iter().collect(),
            line,
            col,
        });
    }
    Ok(out)
}

fn looks_like_uuid(c: &[char]) -> bool {
    if c.len() < 36 {
        return false;
    }
    for (k, ch) in c[..36].iter().enumerate() {
        let ok = if [8, 13, 18, 23].contains(&k) {
            *ch == '-'
        } else {
            ch.is_ascii_hexdigit()
        };
        if !ok {
            return false;
        }
    }
    !c.get(36).is_some_and(|x| x.is_alphanumeric() || *x == '_')
}

// ------------------------------------------------------------------- AST

#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    Str(String),
    Int(String),
    Float(String),
    Bool(bool),
    Uuid([u8; 16]),
    Blob(Vec<u8>),
    Null,
    Set(Vec<Term>),
    List(Vec<Term>),
    Map(Vec<(Term, Term)>),
    /// Bind marker with its position among the statement's markers.
    Bind(usize),
    Func(String, Vec<Term>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct QName {
    pub keyspace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Contains,
    ContainsKey,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rhs {
    One(Term),
    /// `IN (a, b, ...)`
    List(Vec<Term>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub column: String,
    pub op: Op,
    pub rhs: Rhs,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Column(String, Option<String>),
    CountStar(Option<String>),
    Func(String, Vec<Term>, Option<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetOp {
    Assign(Term),
    Add(Term),
    Remove(Term),
    Prepend(Term),
    Element(Term, Term),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColType,
    pub is_static: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Select {
        table: QName,
        selectors: Option<Vec<Selector>>,
        conds: Vec<Cond>,
        limit: Option<Term>,
    },
    Insert {
        table: QName,
        columns: Vec<String>,
        values: Vec<Term>,
        if_not_exists: bool,
    },
    Update {
        table: QName,
        sets: Vec<(String, SetOp)>,
        conds: Vec<Cond>,
        if_exists: bool,
    },
    Delete {
        table: QName,
        columns: Vec<String>,
        conds: Vec<Cond>,
        if_exists: bool,
    },
    Truncate(QName),
    Batch(Vec<Statement>),
    Use(String),
    CreateKeyspace {
        name: String,
        if_not_exists: bool,
        replication: Vec<(String, String)>,
        durable_writes: bool,
    },
    DropKeyspace {
        name: String,
        if_exists: bool,
    },
    CreateTable {
        table: QName,
        if_not_exists: bool,
        columns: Vec<ColumnDef>,
        partition_key: Vec<String>,
        clustering: Vec<String>,
        descending: Vec<String>,
    },
    DropTable {
        table: QName,
        if_exists: bool,
    },
    /// Role and permission statements: accepted and ignored.
    AccessControl,
    /// `DESCRIBE ...` (server-side describe).
    Describe(Vec<String>),
}

/// A parsed statement and how many bind markers it has.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub stmt: Statement,
    pub markers: usize,
    /// Names of `:name` markers by position (None for `?`).
    pub marker_names: Vec<Option<String>>,
}

pub fn parse(input: &str) -> Result<Parsed, SyntaxError> {
    let toks = lex(input)?;
    let mut p = Parser {
        toks,
        pos: 0,
        markers: Vec::new(),
    };
    let stmt = p.statement()?;
    while p.eat_sym(";") {}
    if p.pos < p.toks.len() {
        return Err(p.err_extraneous());
    }
    Ok(Parsed {
        stmt,
        markers: p.markers.len(),
        marker_names: p.markers,
    })
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    markers: Vec<Option<String>>,
}

type PResult<T> = Result<T, SyntaxError>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s, false)) if s == kw)
    }

    fn peek_kw_at(&self, off: usize, kw: &str) -> bool {
        matches!(self.toks.get(self.pos + off).map(|t| &t.tok), Some(Tok::Ident(s, false)) if s == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn err_at_current(&self, expecting: &str) -> SyntaxError {
        match self.toks.get(self.pos) {
            Some(t) => SyntaxError(format!(
                "line {}:{} mismatched input '{}' expecting {}",
                t.line, t.col, t.text, expecting
            )),
            None => {
                let (line, col) = self
                    .toks
                    .last()
                    .map(|t| (t.line, t.col + t.text.chars().count()))
                    .unwrap_or((1, 0));
                SyntaxError(format!(
                    "line {line}:{col} mismatched input '<EOF>' expecting {expecting}"
                ))
            }
        }
    }

    fn err_extraneous(&self) -> SyntaxError {
        match self.toks.get(self.pos) {
            Some(t) => SyntaxError(format!(
                "line {}:{} extraneous input '{}' expecting EOF",
                t.line, t.col, t.text
            )),
            None => self.err_at_current("EOF"),
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.err_at_current(&format!("K_{}", kw.to_uppercase())))
        }
    }

    fn expect_sym(&mut self, s: &str) -> PResult<()> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.err_at_current(&format!("'{s}'")))
        }
    }

    fn ident(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Ident(s, _)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.err_at_current("IDENT")),
        }
    }

    fn qname(&mut self) -> PResult<QName> {
        let a = self.ident()?;
        if self.eat_sym(".") {
            let b = self.ident()?;
            Ok(QName {
                keyspace: Some(a),
                name: b,
            })
        } else {
            Ok(QName {
                keyspace: None,
                name: a,
            })
        }
    }

    fn statement(&mut self) -> PResult<Statement> {
        let first = match self.toks.first() {
            Some(t) => t.clone(),
            None => {
                return Err(SyntaxError(
                    "line 0:-1 no viable alternative at input '<EOF>'".into(),
                ))
            }
        };
        let kw = match &first.tok {
            Tok::Ident(s, false) => s.clone(),
            _ => String::new(),
        };
        match kw.as_str() {
            "select" => {
                self.pos += 1;
                self.select()
            }
            "insert" => {
                self.pos += 1;
                self.insert()
            }
            "update" => {
                self.pos += 1;
                self.update()
            }
            "delete" => {
                self.pos += 1;
                self.delete()
            }
            "truncate" => {
                self.pos += 1;
                self.eat_kw("table");
                Ok(Statement::Truncate(self.qname()?))
            }
            "begin" => {
                self.pos += 1;
                self.batch()
            }
            "use" => {
                self.pos += 1;
                Ok(Statement::Use(self.ident()?))
            }
            "create" => {
                self.pos += 1;
                self.create()
            }
            "drop" => {
                self.pos += 1;
                self.drop()
            }
            "grant" | "revoke" | "list" => {
                self.pos = self.toks.len();
                Ok(Statement::AccessControl)
            }
            "alter" if self.peek_kw_at(1, "role") || self.peek_kw_at(1, "user") => {
                self.pos = self.toks.len();
                Ok(Statement::AccessControl)
            }
            "describe" | "desc" => {
                self.pos += 1;
                let mut words = Vec::new();
                while self.pos < self.toks.len() {
                    let t = &self.toks[self.pos];
                    if !matches!(t.tok, Tok::Sym(";")) {
                        words.push(t.text.clone());
                    }
                    self.pos += 1;
                }
                Ok(Statement::Describe(words))
            }
            _ => {
                // ANTLR's wording for an unknown first token.
                let mut ctx: Vec<String> = Vec::new();
                for t in self.toks.iter().take(2) {
                    ctx.push(t.text.clone());
                }
                Err(SyntaxError(format!(
                    "line {}:{} no viable alternative at input '{}' ([{}]...)",
                    first.line, first.col, first.text, first.text
                )))
            }
        }
    }

    fn select(&mut self) -> PResult<Statement> {
        self.eat_kw("json");
        self.eat_kw("distinct");
        let selectors = if self.eat_sym("*") {
            None
        } else {
            let mut v = Vec::new();
            loop {
                v.push(self.selector()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
            Some(v)
        };
        self.expect_kw("from")?;
        let table = self.qname()?;
        let conds = if self.eat_kw("where") {
            self.conditions()?
        } else {
            Vec::new()
        };
        if self.eat_kw("order") {
            self.expect_kw("by")?;
            loop {
                self.ident()?;
                let _ = self.eat_kw("asc") || self.eat_kw("desc");
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        let mut limit = None;
        if self.eat_kw("per") {
            self.expect_kw("partition")?;
            self.expect_kw("limit")?;
            self.term()?;
        }
        if self.eat_kw("limit") {
            limit = Some(self.term()?);
        }
        if self.eat_kw("allow") {
            self.expect_kw("filtering")?;
        }
        Ok(Statement::Select {
            table,
            selectors,
            conds,
            limit,
        })
    }

    fn alias(&mut self) -> PResult<Option<String>> {
        if self.eat_kw("as") {
            Ok(Some(self.ident()?))
        } else {
            Ok(None)
        }
    }

    fn selector(&mut self) -> PResult<Selector> {
        let name = self.ident()?;
        if self.eat_sym("(") {
            if name == "count" && (self.eat_sym("*") || matches!(self.peek(), Some(Tok::Int(_)))) {
                if matches!(self.peek(), Some(Tok::Int(_))) {
                    self.pos += 1;
                }
                self.expect_sym(")")?;
                return Ok(Selector::CountStar(self.alias()?));
            }
            let mut args = Vec::new();
            if !self.eat_sym(")") {
                loop {
                    args.push(self.term()?);
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.expect_sym(")")?;
            }
            let alias = self.alias()?;
            return Ok(Selector::Func(name, args, alias));
        }
        let alias = self.alias()?;
        Ok(Selector::Column(name, alias))
    }

    fn conditions(&mut self) -> PResult<Vec<Cond>> {
        let mut v = Vec::new();
        loop {
            let column = self.ident()?;
            let op = match self.peek() {
                Some(Tok::Sym("=")) => Op::Eq,
                Some(Tok::Sym("<")) => Op::Lt,
                Some(Tok::Sym("<=")) => Op::Le,
                Some(Tok::Sym(">")) => Op::Gt,
                Some(Tok::Sym(">=")) => Op::Ge,
                Some(Tok::Sym("!=")) => Op::Ne,
                Some(Tok::Ident(s, false)) if s == "in" => Op::In,
                Some(Tok::Ident(s, false)) if s == "contains" => {
                    if self.peek_kw_at(1, "key") {
                        self.pos += 1;
                        Op::ContainsKey
                    } else {
                        Op::Contains
                    }
                }
                _ => return Err(self.err_at_current("set of operators")),
            };
            self.pos += 1;
            let rhs = if op == Op::In && self.eat_sym("(") {
                let mut items = Vec::new();
                if !self.eat_sym(")") {
                    loop {
                        items.push(self.term()?);
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                }
                Rhs::List(items)
            } else {
                Rhs::One(self.term()?)
            };
            v.push(Cond { column, op, rhs });
            if !self.eat_kw("and") {
                break;
            }
        }
        Ok(v)
    }

    fn term(&mut self) -> PResult<Term> {
        let t = match self.peek().cloned() {
            Some(t) => t,
            None => return Err(self.err_at_current("a value")),
        };
        self.pos += 1;
        Ok(match t {
            Tok::Str(s) => Term::Str(s),
            Tok::Int(s) => Term::Int(s),
            Tok::Float(s) => Term::Float(s),
            Tok::Uuid(u) => Term::Uuid(u),
            Tok::Blob(b) => Term::Blob(b),
            Tok::QMark => {
                self.markers.push(None);
                Term::Bind(self.markers.len() - 1)
            }
            Tok::Named(n) => {
                self.markers.push(Some(n));
                Term::Bind(self.markers.len() - 1)
            }
            Tok::Ident(s, false) if s == "true" => Term::Bool(true),
            Tok::Ident(s, false) if s == "false" => Term::Bool(false),
            Tok::Ident(s, false) if s == "null" => Term::Null,
            Tok::Ident(s, false) if s == "nan" => Term::Float("NaN".into()),
            Tok::Ident(s, false) if s == "infinity" => Term::Float("inf".into()),
            Tok::Sym("-") if self.peek_kw("infinity") => {
                self.pos += 1;
                Term::Float("-inf".into())
            }
            Tok::Ident(name, _) if matches!(self.peek(), Some(Tok::Sym("("))) => {
                self.pos += 1;
                let mut args = Vec::new();
                if !self.eat_sym(")") {
                    loop {
                        args.push(self.term()?);
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                }
                Term::Func(name, args)
            }
            Tok::Sym("[") => {
                let mut items = Vec::new();
                if !self.eat_sym("]") {
                    loop {
                        items.push(self.term()?);
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym("]")?;
                }
                Term::List(items)
            }
            Tok::Sym("{") => {
                if self.eat_sym("}") {
                    return Ok(Term::Map(Vec::new()));
                }
                let first = self.term()?;
                if self.eat_sym(":") {
                    let mut items = vec![(first, self.term()?)];
                    while self.eat_sym(",") {
                        let k = self.term()?;
                        self.expect_sym(":")?;
                        items.push((k, self.term()?));
                    }
                    self.expect_sym("}")?;
                    Term::Map(items)
                } else {
                    let mut items = vec![first];
                    while self.eat_sym(",") {
                        items.push(self.term()?);
                    }
                    self.expect_sym("}")?;
                    Term::Set(items)
                }
            }
            _ => {
                self.pos -= 1;
                return Err(SyntaxError(match self.toks.get(self.pos) {
                    Some(t) => format!(
                        "line {}:{} no viable alternative at input '{}'",
                        t.line, t.col, t.text
                    ),
                    None => "line 1:0 no viable alternative at input '<EOF>'".into(),
                }));
            }
        })
    }

    fn using(&mut self) -> PResult<()> {
        if self.eat_kw("using") {
            loop {
                if !(self.eat_kw("ttl") || self.eat_kw("timestamp")) {
                    return Err(self.err_at_current("K_TTL"));
                }
                self.term()?;
                if !self.eat_kw("and") {
                    break;
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self) -> PResult<Statement> {
        self.expect_kw("into")?;
        let table = self.qname()?;
        self.expect_sym("(")?;
        let mut columns = Vec::new();
        loop {
            columns.push(self.ident()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        self.expect_kw("values")?;
        self.expect_sym("(")?;
        let mut values = Vec::new();
        loop {
            values.push(self.term()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_sym(")")?;
        let mut if_not_exists = false;
        if self.eat_kw("if") {
            self.expect_kw("not")?;
            self.expect_kw("exists")?;
            if_not_exists = true;
        }
        self.using()?;
        Ok(Statement::Insert {
            table,
            columns,
            values,
            if_not_exists,
        })
    }

    fn update(&mut self) -> PResult<Statement> {
        let table = self.qname()?;
        self.using()?;
        self.expect_kw("set")?;
        let mut sets = Vec::new();
        loop {
            let col = self.ident()?;
            if self.eat_sym("[") {
                let k = self.term()?;
                self.expect_sym("]")?;
                self.expect_sym("=")?;
                let v = self.term()?;
                sets.push((col, SetOp::Element(k, v)));
            } else {
                self.expect_sym("=")?;
                // col = col + x | col = col - x | col = x + col | col = x
                let is_self = matches!(self.peek(), Some(Tok::Ident(s, _)) if *s == col)
                    && matches!(
                        self.toks.get(self.pos + 1).map(|t| &t.tok),
                        Some(Tok::Sym("+")) | Some(Tok::Sym("-"))
                    );
                if is_self {
                    self.pos += 1;
                    let add = self.eat_sym("+");
                    if !add {
                        self.expect_sym("-")?;
                    }
                    let t = self.term()?;
                    sets.push((col, if add { SetOp::Add(t) } else { SetOp::Remove(t) }));
                } else {
                    let t = self.term()?;
                    if self.eat_sym("+") {
                        let c2 = self.ident()?;
                        if c2 != col {
                            return Err(SyntaxError(format!(
                                "Only expressions of the form X = <value> + X are supported (got {c2})"
                            )));
                        }
                        sets.push((col, SetOp::Prepend(t)));
                    } else {
                        sets.push((col, SetOp::Assign(t)));
                    }
                }
            }
            if !self.eat_sym(",") {
                break;
            }
        }
        self.expect_kw("where")?;
        let conds = self.conditions()?;
        let mut if_exists = false;
        if self.eat_kw("if") {
            self.expect_kw("exists")?;
            if_exists = true;
        }
        Ok(Statement::Update {
            table,
            sets,
            conds,
            if_exists,
        })
    }

    fn delete(&mut self) -> PResult<Statement> {
        let mut columns = Vec::new();
        if !self.peek_kw("from") {
            loop {
                columns.push(self.ident()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        self.expect_kw("from")?;
        let table = self.qname()?;
        self.using()?;
        self.expect_kw("where")?;
        let conds = self.conditions()?;
        let mut if_exists = false;
        if self.eat_kw("if") {
            self.expect_kw("exists")?;
            if_exists = true;
        }
        Ok(Statement::Delete {
            table,
            columns,
            conds,
            if_exists,
        })
    }

    fn batch(&mut self) -> PResult<Statement> {
        let _ = self.eat_kw("unlogged") || self.eat_kw("logged") || self.eat_kw("counter");
        self.expect_kw("batch")?;
        self.using()?;
        let mut stmts = Vec::new();
        loop {
            while self.eat_sym(";") {}
            if self.eat_kw("apply") {
                self.expect_kw("batch")?;
                break;
            }
            let s = if self.eat_kw("insert") {
                self.insert()?
            } else if self.eat_kw("update") {
                self.update()?
            } else if self.eat_kw("delete") {
                self.delete()?
            } else {
                return Err(self.err_at_current("K_APPLY"));
            };
            stmts.push(s);
        }
        Ok(Statement::Batch(stmts))
    }

    fn if_not_exists(&mut self) -> PResult<bool> {
        if self.eat_kw("if") {
            self.expect_kw("not")?;
            self.expect_kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn if_exists(&mut self) -> PResult<bool> {
        if self.eat_kw("if") {
            self.expect_kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn create(&mut self) -> PResult<Statement> {
        if self.eat_kw("keyspace") || self.eat_kw("schema") {
            let if_not_exists = self.if_not_exists()?;
            let name = self.ident()?;
            let mut replication = Vec::new();
            let mut durable_writes = true;
            if self.eat_kw("with") {
                loop {
                    let prop = self.ident()?;
                    self.expect_sym("=")?;
                    let t = self.term()?;
                    match (prop.as_str(), t) {
                        ("replication", Term::Map(items)) => {
                            for (k, v) in items {
                                replication.push((term_text(&k), term_text(&v)));
                            }
                        }
                        ("durable_writes", Term::Bool(b)) => durable_writes = b,
                        _ => {}
                    }
                    if !self.eat_kw("and") {
                        break;
                    }
                }
            }
            return Ok(Statement::CreateKeyspace {
                name,
                if_not_exists,
                replication,
                durable_writes,
            });
        }
        if self.eat_kw("table") || self.eat_kw("columnfamily") {
            return self.create_table();
        }
        if self.peek_kw("role") || self.peek_kw("user") {
            self.pos = self.toks.len();
            return Ok(Statement::AccessControl);
        }
        Err(self.err_at_current("K_KEYSPACE"))
    }

    fn type_name(&mut self) -> PResult<(ColType, String)> {
        let start = self.pos;
        let mut text = self.ident()?;
        if self.eat_sym("<") {
            text.push('<');
            let mut depth = 1;
            while depth > 0 {
                match self.peek().cloned() {
                    Some(Tok::Sym("<")) => {
                        depth += 1;
                        text.push('<');
                    }
                    Some(Tok::Sym(">")) => {
                        depth -= 1;
                        text.push('>');
                    }
                    Some(Tok::Sym(",")) => text.push(','),
                    Some(Tok::Ident(s, _)) => text.push_str(&s),
                    _ => return Err(self.err_at_current("'>'")),
                }
                self.pos += 1;
            }
        }
        match ColType::parse(&text) {
            Some(t) => Ok((t, text)),
            None => {
                let t = &self.toks[start];
                Err(SyntaxError(format!(
                    "line {}:{} no viable alternative at input '{}'",
                    t.line, t.col, t.text
                )))
            }
        }
    }

    fn create_table(&mut self) -> PResult<Statement> {
        let if_not_exists = self.if_not_exists()?;
        let table = self.qname()?;
        self.expect_sym("(")?;
        let mut columns = Vec::new();
        let mut partition_key = Vec::new();
        let mut clustering = Vec::new();
        loop {
            if self.eat_kw("primary") {
                self.expect_kw("key")?;
                self.expect_sym("(")?;
                if self.eat_sym("(") {
                    loop {
                        partition_key.push(self.ident()?);
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                } else {
                    partition_key.push(self.ident()?);
                }
                while self.eat_sym(",") {
                    clustering.push(self.ident()?);
                }
                self.expect_sym(")")?;
            } else {
                let name = self.ident()?;
                let (ty, _) = self.type_name()?;
                let is_static = self.eat_kw("static");
                if self.eat_kw("primary") {
                    self.expect_kw("key")?;
                    partition_key.push(name.clone());
                }
                columns.push(ColumnDef {
                    name,
                    ty,
                    is_static,
                });
            }
            if !self.eat_sym(",") {
                break;
            }
            if matches!(self.peek(), Some(Tok::Sym(")"))) {
                break;
            }
        }
        self.expect_sym(")")?;
        let mut descending = Vec::new();
        if self.eat_kw("with") {
            loop {
                if self.eat_kw("clustering") {
                    self.expect_kw("order")?;
                    self.expect_kw("by")?;
                    self.expect_sym("(")?;
                    loop {
                        let c = self.ident()?;
                        if self.eat_kw("desc") {
                            descending.push(c);
                        } else {
                            self.eat_kw("asc");
                        }
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                } else if self.eat_kw("compact") {
                    self.expect_kw("storage")?;
                } else {
                    self.ident()?;
                    self.expect_sym("=")?;
                    self.term()?;
                }
                if !self.eat_kw("and") {
                    break;
                }
            }
        }
        Ok(Statement::CreateTable {
            table,
            if_not_exists,
            columns,
            partition_key,
            clustering,
            descending,
        })
    }

    fn drop(&mut self) -> PResult<Statement> {
        if self.eat_kw("keyspace") || self.eat_kw("schema") {
            let if_exists = self.if_exists()?;
            let name = self.ident()?;
            return Ok(Statement::DropKeyspace { name, if_exists });
        }
        if self.eat_kw("table") || self.eat_kw("columnfamily") {
            let if_exists = self.if_exists()?;
            let table = self.qname()?;
            return Ok(Statement::DropTable { table, if_exists });
        }
        if self.peek_kw("role") || self.peek_kw("user") {
            self.pos = self.toks.len();
            return Ok(Statement::AccessControl);
        }
        Err(self.err_at_current("K_KEYSPACE"))
    }
}

fn term_text(t: &Term) -> String {
    match t {
        Term::Str(s) | Term::Int(s) | Term::Float(s) => s.clone(),
        Term::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keyword_is_cassandra_syntax_error() {
        let e = parse("SELEC * FROM users").unwrap_err();
        assert_eq!(
            e.0,
            "line 1:0 no viable alternative at input 'SELEC' ([SELEC]...)"
        );
    }

    #[test]
    fn parses_workload_statements() {
        for q in [
            "CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            "CREATE TABLE IF NOT EXISTS ks.users (id int PRIMARY KEY, name text, tags set<text>)",
            "CREATE TABLE t (a int, b timeuuid, c map<text, int>, PRIMARY KEY ((a), b)) WITH CLUSTERING ORDER BY (b DESC)",
            "INSERT INTO users (id, name, tags) VALUES (1, 'al''ice', {'admin', 'dev'}) IF NOT EXISTS",
            "UPDATE users SET name = 'ALICE', tags = tags + {'x'} WHERE id = 1",
            "DELETE FROM users WHERE id = 2",
            "SELECT id, name FROM users WHERE id IN (1, 2) AND c >= ? LIMIT 10 ALLOW FILTERING",
            "SELECT now() FROM system.local",
            "SELECT count(*) FROM ks.users",
            "BEGIN BATCH INSERT INTO t (a) VALUES (1); DELETE FROM t WHERE a = 2; APPLY BATCH",
            "USE \"MyKs\"",
            "INSERT INTO t (a, b, c) VALUES (?, 0xcafe, 123e4567-e89b-12d3-a456-426614174000)",
            "select * from system.local where key='local'",
        ] {
            parse(q).unwrap_or_else(|e| panic!("{q}: {e:?}"));
        }
        let p = parse("INSERT INTO t (a, b) VALUES (?, :b)").unwrap();
        assert_eq!(p.markers, 2);
        assert_eq!(p.marker_names[1].as_deref(), Some("b"));
        assert!(matches!(
            parse("USE \"MyKs\"").unwrap().stmt,
            Statement::Use(ref s) if s == "MyKs"
        ));
    }

    #[test]
    fn errors_do_not_panic() {
        for q in [
            "",
            "SELECT",
            "SELECT * FROM",
            "INSERT INTO t (a VALUES",
            "'unterminated",
            "CREATE TABLE t (a nope PRIMARY KEY)",
            "SELECT * FROM t WHERE a = ",
            "{{{{",
            "0x1",
            "UPDATE t SET a = 1 + b WHERE a = 1",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
    }
}
