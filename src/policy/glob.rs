//! Name patterns: `*` matches any run of characters (also none); everything else matches
//! itself, case-sensitively. Used for resource names (`TABLE demo.audit_*`) and bindings
//! (`principal = "svc-*"`, `uri = "spiffe://example.org/ns/etl/*"`).

use std::fmt;

/// A compiled name pattern. Without `*` it is an exact name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    text: Box<str>,
    exact: bool,
}

impl Glob {
    pub fn new(text: &str) -> Glob {
        Glob {
            text: text.into(),
            exact: !text.contains('*'),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` matches. Linear in `name` times the number of `*` in the pattern;
    /// never allocates.
    pub fn matches(&self, name: &str) -> bool {
        if self.exact {
            return *self.text == *name;
        }
        wildcard_match(self.text.as_bytes(), name.as_bytes())
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The classic two-pointer match with one backtrack point: on a mismatch after a `*`, the
/// star absorbs one more byte. Bytes, not characters: `*` is ASCII, so a match never splits
/// a UTF-8 sequence in a way that matters (both sides are valid UTF-8 and literal parts
/// compare byte for byte).
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).matches(n)
    }

    #[test]
    fn exact_and_wildcards() {
        assert!(m("demo", "demo"));
        assert!(!m("demo", "Demo"));
        assert!(!m("demo", "demo2"));
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("audit_*", "audit_"));
        assert!(m("audit_*", "audit_2024"));
        assert!(!m("audit_*", "audi"));
        assert!(!m("audit_*", "xaudit_1"));
        assert!(m("*_log", "app_log"));
        assert!(!m("*_log", "app_logs"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "aXXcYYb"));
        assert!(m(
            "spiffe://example.org/ns/etl/*",
            "spiffe://example.org/ns/etl/sa/x"
        ));
        assert!(!m(
            "spiffe://example.org/ns/etl/*",
            "spiffe://example.org/ns/web/sa"
        ));
        assert!(m("**", "x"));
        assert!(m("*@example.com", "alice@example.com"));
        assert!(!m("*@example.com", "alice@example.com.evil"));
    }

    #[test]
    fn non_ascii_and_long_names() {
        assert!(m("t*é", "tablé"));
        assert!(m("é*", "éa"));
        let long = "a".repeat(100_000);
        assert!(!m("*a*b", &long));
        assert!(m("*a", &long));
    }
}
