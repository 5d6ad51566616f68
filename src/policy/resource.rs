//! Resources as a policy names them, the way Cassandra's GRANT writes them, with `*`
//! patterns in names: `ALL KEYSPACES`, `KEYSPACE tenant_*`, `TABLE demo.audit_*`,
//! `ALL FUNCTIONS`, `ALL FUNCTIONS IN KEYSPACE ks`, `FUNCTION ks.f`, `FUNCTION ks.f(int, text)`,
//! `ALL ROLES`, `ROLE alice`, `ALL MBEANS`, `MBEAN 'org.apache.cassandra.db:*'`.
//!
//! Names follow CQL: unquoted names fold to lower case, `"Quoted"` names keep their case
//! (`""` stands for one `"`). Keywords are case-insensitive. `*` is a wildcard in any name.

use std::fmt;

use crate::classify::{Permission, PermissionSet, Resource};

use super::glob::Glob;

/// One resource pattern of a grant or deny rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    AllKeyspaces,
    Keyspace(Glob),
    Table {
        keyspace: Glob,
        table: Glob,
    },
    AllFunctions,
    KeyspaceFunctions(Glob),
    /// `args`: the normalised argument types (as the classifier prints them), or `None` for
    /// every overload.
    Function {
        keyspace: Glob,
        name: Glob,
        args: Option<Box<str>>,
    },
    AllRoles,
    Role(Glob),
    AllMbeans,
    Mbean(Glob),
}

impl Pattern {
    /// Parses a resource as written in the policy; the error is a sentence for the operator.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let toks = tokenize(text)?;
        let mut p = TokParser {
            toks: &toks,
            pos: 0,
        };
        let pat = p.pattern(text)?;
        if p.pos < toks.len() {
            return Err(format!(
                "unexpected {} after the resource in {text:?}",
                toks[p.pos].describe()
            ));
        }
        Ok(pat)
    }

    /// Whether this pattern names `resource` or one of its parents: a rule on it applies
    /// to `resource`, as a Cassandra grant on a parent applies to its children.
    pub fn covers(&self, resource: &Resource<'_>) -> bool {
        use Resource as R;
        match (self, resource) {
            (Pattern::AllKeyspaces, R::AllKeyspaces | R::Keyspace(_) | R::Table { .. }) => true,
            (Pattern::Keyspace(g), R::Keyspace(k) | R::Table { keyspace: k, .. }) => g.matches(k),
            (
                Pattern::Table { keyspace, table },
                R::Table {
                    keyspace: k,
                    table: t,
                },
            ) => keyspace.matches(k) && table.matches(t),
            (
                Pattern::AllFunctions,
                R::AllFunctions | R::KeyspaceFunctions(_) | R::Function { .. },
            ) => true,
            (
                Pattern::KeyspaceFunctions(g),
                R::KeyspaceFunctions(k) | R::Function { keyspace: k, .. },
            ) => g.matches(k),
            (
                Pattern::Function {
                    keyspace,
                    name,
                    args,
                },
                R::Function {
                    keyspace: k,
                    name: n,
                    args: a,
                },
            ) => {
                keyspace.matches(k)
                    && name.matches(n)
                    && match args {
                        None => true,
                        Some(want) => a.as_deref() == Some(&**want),
                    }
            }
            (Pattern::AllRoles, R::AllRoles | R::Role(_)) => true,
            (Pattern::Role(g), R::Role(r)) => g.matches(r),
            (Pattern::AllMbeans, R::AllMbeans | R::Mbean(_)) => true,
            (Pattern::Mbean(g), R::Mbean(m)) => g.matches(m),
            _ => false,
        }
    }

    /// Whether this pattern names something inside keyspace `ks` (a table or function of
    /// it), or the keyspace itself or a parent. `USE ks` is allowed to whoever holds any
    /// grant there: a driver that connects with a keyspace issues `USE ks` first.
    pub fn reaches_keyspace(&self, ks: &str) -> bool {
        match self {
            Pattern::AllKeyspaces => true,
            Pattern::Keyspace(g)
            | Pattern::Table { keyspace: g, .. }
            | Pattern::KeyspaceFunctions(g)
            | Pattern::Function { keyspace: g, .. } => g.matches(ks),
            _ => false,
        }
    }

    /// The permissions a rule may name on this resource: Cassandra's applicable
    /// permissions for it (what `GRANT ALL` means there), plus DESCRIBE on data and
    /// function resources, which the proxy asks for USE and DESCRIBE statements.
    pub fn applicable(&self) -> PermissionSet {
        let mut set = self.representative().applicable_permissions();
        match self {
            Pattern::AllKeyspaces
            | Pattern::Keyspace(_)
            | Pattern::Table { .. }
            | Pattern::AllFunctions
            | Pattern::KeyspaceFunctions(_)
            | Pattern::Function { .. } => set.insert(Permission::Describe),
            _ => {}
        }
        set
    }

    /// A resource of the same level, for Cassandra's per-level rules.
    fn representative(&self) -> Resource<'static> {
        use std::borrow::Cow::Borrowed as B;
        match self {
            Pattern::AllKeyspaces => Resource::AllKeyspaces,
            Pattern::Keyspace(_) => Resource::Keyspace(B("")),
            Pattern::Table { .. } => Resource::Table {
                keyspace: B(""),
                table: B(""),
            },
            Pattern::AllFunctions => Resource::AllFunctions,
            Pattern::KeyspaceFunctions(_) => Resource::KeyspaceFunctions(B("")),
            Pattern::Function { .. } => Resource::Function {
                keyspace: B(""),
                name: B(""),
                args: None,
            },
            Pattern::AllRoles => Resource::AllRoles,
            Pattern::Role(_) => Resource::Role(B("")),
            Pattern::AllMbeans => Resource::AllMbeans,
            Pattern::Mbean(_) => Resource::Mbean(B("")),
        }
    }
}

impl fmt::Display for Pattern {
    /// The canonical policy spelling (`TABLE demo.audit_*`), quoting names that need it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::AllKeyspaces => f.write_str("ALL KEYSPACES"),
            Pattern::Keyspace(k) => write!(f, "KEYSPACE {}", Name(k)),
            Pattern::Table { keyspace, table } => {
                write!(f, "TABLE {}.{}", Name(keyspace), Name(table))
            }
            Pattern::AllFunctions => f.write_str("ALL FUNCTIONS"),
            Pattern::KeyspaceFunctions(k) => write!(f, "ALL FUNCTIONS IN KEYSPACE {}", Name(k)),
            Pattern::Function {
                keyspace,
                name,
                args,
            } => {
                write!(f, "FUNCTION {}.{}", Name(keyspace), Name(name))?;
                match args {
                    Some(a) => write!(f, "({a})"),
                    None => Ok(()),
                }
            }
            Pattern::AllRoles => f.write_str("ALL ROLES"),
            Pattern::Role(r) => write!(f, "ROLE {}", Name(r)),
            Pattern::AllMbeans => f.write_str("ALL MBEANS"),
            Pattern::Mbean(m) => write!(f, "MBEAN '{}'", m.as_str().replace('\'', "''")),
        }
    }
}

/// A name printed as CQL would need it: bare when it is lower case letters, digits, `_` and
/// `*`, quoted otherwise.
struct Name<'a>(&'a Glob);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_str();
        let bare = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'*');
        if bare {
            f.write_str(s)
        } else {
            write!(f, "\"{}\"", s.replace('"', "\"\""))
        }
    }
}

/// A token of a resource text.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// An unquoted word as written (keywords and names; may hold `*`).
    Word(String),
    /// A `"quoted"` name, unescaped.
    Quoted(String),
    /// A `'string'`, unescaped (MBean names, role names).
    Str(String),
    /// One of `.`, `(`, `)`, `,`, `<`, `>`.
    Sym(char),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Quoted(q) => format!("'\"{q}\"'"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Sym(c) => format!("'{c}'"),
        }
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '*' {
            let mut end = i;
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == '*' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            toks.push(Tok::Word(text[i..end].to_string()));
        } else if c == '"' || c == '\'' {
            chars.next();
            let mut s = String::new();
            let mut closed = false;
            while let Some((_, d)) = chars.next() {
                if d == c {
                    if chars.peek().map(|&(_, e)| e) == Some(c) {
                        chars.next();
                        s.push(c);
                    } else {
                        closed = true;
                        break;
                    }
                } else {
                    s.push(d);
                }
            }
            if !closed {
                return Err(format!("unterminated {c}quoted{c} name in {text:?}"));
            }
            toks.push(if c == '"' {
                Tok::Quoted(s)
            } else {
                Tok::Str(s)
            });
        } else if ".(),<>".contains(c) {
            chars.next();
            toks.push(Tok::Sym(c));
        } else {
            return Err(format!("unexpected character {c:?} in resource {text:?}"));
        }
    }
    Ok(toks)
}

struct TokParser<'t> {
    toks: &'t [Tok],
    pos: usize,
}

const FORMS: &str = "ALL KEYSPACES, KEYSPACE ks, TABLE ks.t, ALL FUNCTIONS, \
    ALL FUNCTIONS IN KEYSPACE ks, FUNCTION ks.f, FUNCTION ks.f(types), ALL ROLES, ROLE r, \
    ALL MBEANS or MBEAN 'name'";

impl TokParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_keyword(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Sym(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn pattern(&mut self, text: &str) -> Result<Pattern, String> {
        let unknown = || format!("unknown resource {text:?}: expected {FORMS}");
        if self.eat_keyword("ALL") {
            if self.eat_keyword("KEYSPACES") {
                return Ok(Pattern::AllKeyspaces);
            }
            if self.eat_keyword("ROLES") {
                return Ok(Pattern::AllRoles);
            }
            if self.eat_keyword("MBEANS") {
                return Ok(Pattern::AllMbeans);
            }
            if self.eat_keyword("FUNCTIONS") {
                if self.eat_keyword("IN") {
                    if !self.eat_keyword("KEYSPACE") {
                        return Err(unknown());
                    }
                    return Ok(Pattern::KeyspaceFunctions(self.name(text, "keyspace")?));
                }
                return Ok(Pattern::AllFunctions);
            }
            return Err(unknown());
        }
        if self.eat_keyword("KEYSPACE") {
            return Ok(Pattern::Keyspace(self.name(text, "keyspace")?));
        }
        if self.eat_keyword("TABLE") {
            let (keyspace, table) = self.qualified(text, "TABLE", "table")?;
            return Ok(Pattern::Table { keyspace, table });
        }
        if self.eat_keyword("FUNCTION") {
            let (keyspace, name) = self.qualified(text, "FUNCTION", "function")?;
            let args = if self.eat_sym('(') {
                Some(self.arg_types(text)?.into_boxed_str())
            } else {
                None
            };
            return Ok(Pattern::Function {
                keyspace,
                name,
                args,
            });
        }
        if self.eat_keyword("ROLE") {
            return Ok(Pattern::Role(self.name_or_string(text, "role")?));
        }
        if self.eat_keyword("MBEAN") || self.eat_keyword("MBEANS") {
            return match self.toks.get(self.pos) {
                Some(Tok::Str(s)) => {
                    self.pos += 1;
                    Ok(Pattern::Mbean(Glob::new(s)))
                }
                _ => Err(format!(
                    "MBEAN needs its name as a 'string' in {text:?} (e.g. MBEAN 'org.apache.cassandra.db:*')"
                )),
            };
        }
        Err(unknown())
    }

    /// A name: an unquoted word (folded to lower case) or a quoted name.
    fn name(&mut self, text: &str, what: &str) -> Result<Glob, String> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(Glob::new(&w.to_ascii_lowercase()))
            }
            Some(Tok::Quoted(q)) if !q.is_empty() => {
                self.pos += 1;
                Ok(Glob::new(q))
            }
            _ => Err(format!("expected a {what} name in {text:?}")),
        }
    }

    /// A role name may also be a 'string', as in Cassandra's `GRANT ... ON ROLE 'x'`.
    fn name_or_string(&mut self, text: &str, what: &str) -> Result<Glob, String> {
        if let Some(Tok::Str(s)) = self.toks.get(self.pos) {
            if !s.is_empty() {
                self.pos += 1;
                return Ok(Glob::new(s));
            }
        }
        self.name(text, what)
    }

    /// `ks.name`: the keyspace is required, as the policy has no current keyspace.
    fn qualified(&mut self, text: &str, kw: &str, what: &str) -> Result<(Glob, Glob), String> {
        let first = self.name(text, what)?;
        if !self.eat_sym('.') {
            return Err(format!(
                "{kw} needs a keyspace in {text:?}: write {kw} ks.{}",
                first.as_str()
            ));
        }
        let second = self.name(text, what)?;
        Ok((first, second))
    }

    /// `(type, type, ...)` after the opening bracket, normalised as the classifier prints
    /// signatures: lower-case type names joined by ", ", nested types as `map<text, int>`.
    fn arg_types(&mut self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut depth = 0u32;
        let mut expect_type = true;
        loop {
            let tok = match self.toks.get(self.pos) {
                Some(t) => t.clone(),
                None => return Err(format!("unclosed argument list in {text:?}")),
            };
            self.pos += 1;
            match tok {
                Tok::Sym(')') if depth == 0 && (out.is_empty() || !expect_type) => return Ok(out),
                Tok::Word(w) if expect_type => {
                    out.push_str(&w.to_ascii_lowercase());
                    expect_type = false;
                }
                Tok::Quoted(q) if expect_type => {
                    out.push_str(&q);
                    expect_type = false;
                }
                Tok::Sym('.') if !expect_type => {
                    out.push('.');
                    expect_type = true;
                }
                Tok::Sym('<') if !expect_type => {
                    out.push('<');
                    depth += 1;
                    expect_type = true;
                }
                Tok::Sym('>') if !expect_type && depth > 0 => {
                    out.push('>');
                    depth -= 1;
                }
                Tok::Sym(',') if !expect_type => {
                    out.push_str(", ");
                    expect_type = true;
                }
                other => {
                    return Err(format!(
                        "unexpected {} in the argument types of {text:?}",
                        other.describe()
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow::Borrowed as B;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn table(k: &'static str, t: &'static str) -> Resource<'static> {
        Resource::Table {
            keyspace: B(k),
            table: B(t),
        }
    }

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for s in [
            "ALL KEYSPACES",
            "KEYSPACE demo",
            "KEYSPACE tenant_*",
            "TABLE demo.users",
            "TABLE demo.audit_*",
            "TABLE \"Mixed\".t",
            "ALL FUNCTIONS",
            "ALL FUNCTIONS IN KEYSPACE demo",
            "FUNCTION demo.f",
            "FUNCTION demo.f(int, text)",
            "FUNCTION demo.f(frozen<map<text, int>>, list<int>)",
            "FUNCTION demo.f()",
            "ALL ROLES",
            "ROLE alice",
            "ALL MBEANS",
            "MBEAN 'org.apache.cassandra.db:*'",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
    }

    #[test]
    fn names_fold_like_cql() {
        assert_eq!(p("table Demo.Users").to_string(), "TABLE demo.users");
        assert_eq!(p("all   keyspaces").to_string(), "ALL KEYSPACES");
        assert_eq!(p("TABLE demo . users").to_string(), "TABLE demo.users");
        assert_eq!(
            p("FUNCTION demo.f( INT ,Map< TEXT,int> )").to_string(),
            "FUNCTION demo.f(int, map<text, int>)"
        );
        assert_eq!(p("ROLE 'Alice'").to_string(), "ROLE \"Alice\"");
        assert_eq!(p("KEYSPACE \"a\"\"b\"").to_string(), "KEYSPACE \"a\"\"b\"");
    }

    #[test]
    fn rejects_bad_resources() {
        for (s, want) in [
            ("TABLEX demo", "unknown resource"),
            ("TABLE users", "TABLE needs a keyspace"),
            ("KEYSPACE", "expected a keyspace name"),
            ("ALL TABLES", "unknown resource"),
            ("KEYSPACE demo extra", "unexpected 'extra'"),
            ("TABLE demo.\"users", "unterminated"),
            ("FUNCTION demo.f(int", "unclosed"),
            ("FUNCTION demo.f(int,)", "unexpected ')'"),
            ("KEYSPACE de-mo", "unexpected character '-'"),
            ("MBEAN x", "MBEAN needs its name"),
            ("", "unknown resource"),
            ("KEYSPACE \"\"", "expected a keyspace name"),
        ] {
            let err = Pattern::parse(s).unwrap_err();
            assert!(err.contains(want), "{s}: {err}");
        }
    }

    #[test]
    fn hierarchy() {
        let users = table("demo", "users");
        assert!(p("ALL KEYSPACES").covers(&users));
        assert!(p("KEYSPACE demo").covers(&users));
        assert!(p("KEYSPACE de*").covers(&users));
        assert!(!p("KEYSPACE other").covers(&users));
        assert!(p("TABLE demo.users").covers(&users));
        assert!(p("TABLE demo.*").covers(&users));
        assert!(!p("TABLE demo.audit_*").covers(&users));
        assert!(p("TABLE demo.audit_*").covers(&table("demo", "audit_2024")));
        // A table rule never covers its keyspace.
        assert!(!p("TABLE demo.*").covers(&Resource::Keyspace(B("demo"))));
        assert!(p("ALL KEYSPACES").covers(&Resource::AllKeyspaces));
        assert!(!p("KEYSPACE demo").covers(&Resource::AllKeyspaces));
        // Separate trees.
        assert!(!p("ALL KEYSPACES").covers(&Resource::AllFunctions));
        assert!(!p("KEYSPACE demo").covers(&Resource::KeyspaceFunctions(B("demo"))));
    }

    #[test]
    fn functions_and_roles() {
        let any = Resource::Function {
            keyspace: B("demo"),
            name: B("f"),
            args: None,
        };
        let int = Resource::Function {
            keyspace: B("demo"),
            name: B("f"),
            args: Some(B("int")),
        };
        assert!(p("ALL FUNCTIONS").covers(&any));
        assert!(p("ALL FUNCTIONS IN KEYSPACE demo").covers(&any));
        assert!(p("FUNCTION demo.f").covers(&any));
        assert!(p("FUNCTION demo.f").covers(&int));
        assert!(p("FUNCTION demo.f(int)").covers(&int));
        // One overload does not cover "every overload" (a call site).
        assert!(!p("FUNCTION demo.f(int)").covers(&any));
        assert!(!p("FUNCTION demo.f(text)").covers(&int));
        assert!(p("ALL ROLES").covers(&Resource::Role(B("bob"))));
        assert!(p("ROLE b*").covers(&Resource::Role(B("bob"))));
        assert!(!p("ROLE alice").covers(&Resource::Role(B("bob"))));
        assert!(!p("ROLE alice").covers(&Resource::AllRoles));
        assert!(p("MBEAN 'org.*'").covers(&Resource::Mbean(B("org.x:type=y"))));
    }

    #[test]
    fn reaching_a_keyspace() {
        assert!(p("TABLE demo.users").reaches_keyspace("demo"));
        assert!(p("KEYSPACE demo").reaches_keyspace("demo"));
        assert!(p("ALL KEYSPACES").reaches_keyspace("demo"));
        assert!(p("FUNCTION demo.f").reaches_keyspace("demo"));
        assert!(!p("TABLE other.users").reaches_keyspace("demo"));
        assert!(!p("ALL ROLES").reaches_keyspace("demo"));
    }

    #[test]
    fn applicable_permissions() {
        assert!(!p("TABLE demo.t").applicable().contains(Permission::Create));
        assert!(p("TABLE demo.t")
            .applicable()
            .contains(Permission::Describe));
        assert!(p("KEYSPACE demo").applicable().contains(Permission::Create));
        assert!(p("FUNCTION demo.f")
            .applicable()
            .contains(Permission::Execute));
        assert!(!p("ROLE r").applicable().contains(Permission::Describe));
        assert!(p("ALL ROLES").applicable().contains(Permission::Describe));
    }
}
