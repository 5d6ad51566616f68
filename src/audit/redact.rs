//! Masking of statement text for the audit log.
//!
//! Passwords of role statements (`CREATE ROLE r WITH PASSWORD = 'x'`, `ALTER USER u WITH
//! PASSWORD 'x'`, `HASHED PASSWORD`) are always masked, as Cassandra's audit log does. With
//! `literals`, every string, number, UUID, duration and blob literal becomes `?`.

use std::borrow::Cow;

use crate::classify::lexer::{Lexer, Tok};

/// What replaces a password.
const MASK: &str = "'*******'";

/// The text to record for `text`: `text` itself when nothing is masked (the usual case).
pub fn redact(text: &str, literals: bool) -> Cow<'_, str> {
    if !literals && !mentions_password(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut lexer = Lexer::new(text);
    let mut copied = 0;
    // After the word PASSWORD (and an optional `=`), the next string literal is a password.
    let mut after_password = false;
    loop {
        let tok = match lexer.next_token() {
            Ok(Tok::End) => break,
            Ok(tok) => tok,
            Err(_) => return Cow::Owned(unlexable(text, literals)),
        };
        let start = lexer.token_start();
        let end = lexer.offset();
        let is_literal = matches!(tok, Tok::Str(_) | Tok::Dollar(_) | Tok::Number(_));
        let mask = match tok {
            Tok::Str(_) | Tok::Dollar(_) if after_password => Some(MASK),
            _ if literals && is_literal => Some("?"),
            _ => None,
        };
        if let Some(mask) = mask {
            out.push_str(text.get(copied..start).unwrap_or_default());
            out.push_str(mask);
            copied = end;
        }
        after_password = match tok {
            Tok::Ident(word) => word.eq_ignore_ascii_case("password"),
            Tok::Sym("=") | Tok::Sym(":") => after_password,
            _ => false,
        };
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

/// Whether `text` contains the word PASSWORD in any case: only then is it lexed.
fn mentions_password(text: &str) -> bool {
    text.as_bytes()
        .windows(8)
        .any(|w| w.eq_ignore_ascii_case(b"password"))
}

/// Text the lexer cannot read: cut before anything that may be a password, and entirely
/// when literals are masked.
fn unlexable(text: &str, literals: bool) -> String {
    if literals {
        return "<statement not recorded: it cannot be read to mask its literals>".to_string();
    }
    match text.to_ascii_lowercase().find("password") {
        Some(at) => format!(
            "{}password <rest not recorded>",
            text.get(..at).unwrap_or_default()
        ),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_always_masked() {
        assert_eq!(
            redact(
                "CREATE ROLE bob WITH PASSWORD = 'hunter2' AND LOGIN = true",
                false
            ),
            "CREATE ROLE bob WITH PASSWORD = '*******' AND LOGIN = true"
        );
        assert_eq!(
            redact("alter user bob with password 'it''s'", false),
            "alter user bob with password '*******'"
        );
        assert_eq!(
            redact("CREATE ROLE r WITH HASHED PASSWORD = $$abc$$", false),
            "CREATE ROLE r WITH HASHED PASSWORD = '*******'"
        );
        assert_eq!(
            redact("CREATE ROLE r WITH OPTIONS = {'password': 'x'}", false),
            "CREATE ROLE r WITH OPTIONS = {'password': 'x'}"
        );
    }

    #[test]
    fn other_text_is_kept_unless_literals_are_masked() {
        let q = "SELECT * FROM shop.orders WHERE id = 42 AND name = 'ann' -- note";
        assert_eq!(redact(q, false), q);
        assert_eq!(
            redact(q, true),
            "SELECT * FROM shop.orders WHERE id = ? AND name = ? -- note"
        );
        assert_eq!(
            redact(
                "INSERT INTO t (k, u, b) VALUES (?, 123e4567-e89b-12d3-a456-426614174000, 0xff)",
                true
            ),
            "INSERT INTO t (k, u, b) VALUES (?, ?, ?)"
        );
    }

    #[test]
    fn unreadable_text_is_cut_before_a_password() {
        assert_eq!(
            redact("CREATE ROLE r WITH PASSWORD = 'unterminated", false),
            "CREATE ROLE r WITH password <rest not recorded>"
        );
        assert!(redact("SELECT 'unterminated", true).starts_with("<statement not recorded"));
        assert_eq!(
            redact("SELECT 'unterminated", false),
            "SELECT 'unterminated"
        );
    }
}
