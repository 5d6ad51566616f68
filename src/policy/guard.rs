//! The guardrails that bound what a request asks, rather than which features a statement
//! uses: the consistency levels reads and writes may use, the page size of a SELECT, the
//! size of a batch and of a statement's text. Each role compiles its own bounds
//! ([`RoleGuards`]); an identity's [`Guards`] are the bounds of every role it holds, in the
//! policy's order, all of them applying (guardrails only restrict). Refusals are worded as
//! Cassandra words its own guardrails: `Guardrail max_page_size violated: ...`.

use std::sync::Arc;

use toml::Spanned;

use crate::codec::primitives::Consistency;

use super::error::{line_of, PolicyError};
use super::format::{nonempty_entries, GuardrailSpec, Names};

/// Consistency levels by wire code: ANY (0) to LOCAL_ONE (10).
const LEVEL_CODES: std::ops::RangeInclusive<u16> = 0..=10;

/// A numeric bound of `guardrails = { ... }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    PageSize,
    BatchStatements,
    BatchBytes,
    StatementBytes,
}

impl Bound {
    /// The key in `guardrails = { ... }`, and the guardrail's name in refusals.
    fn key(self) -> &'static str {
        match self {
            Bound::PageSize => "max_page_size",
            Bound::BatchStatements => "max_batch_statements",
            Bound::BatchBytes => "max_batch_bytes",
            Bound::StatementBytes => "max_statement_bytes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The levels a role allows for reads or for writes.
#[derive(Debug)]
pub(crate) struct Levels {
    /// Bit `code` set for each allowed wire code.
    mask: u32,
    /// `ONE, LOCAL_QUORUM`: the allowed levels as the policy lists them.
    shown: Box<str>,
    /// `role reader: guardrail read_consistency = [ONE, LOCAL_QUORUM] (line 4)`.
    rule: Box<str>,
}

impl Levels {
    fn allows(&self, level: u16) -> bool {
        level < 32 && self.mask & (1 << level) != 0
    }
}

/// One numeric bound of a role.
#[derive(Debug)]
pub(crate) struct Limit {
    max: u64,
    /// `role reader: guardrail max_page_size = 5000 (line 4)`.
    rule: Box<str>,
}

/// The bounds one role sets itself (a role that inherits it holds it, and with it these).
#[derive(Debug, Default)]
pub(crate) struct RoleGuards {
    role: Box<str>,
    read: Option<Levels>,
    write: Option<Levels>,
    /// Per [`Bound::index`].
    limits: [Option<Limit>; 4],
}

/// The level named `name` (any case), as a wire code.
fn level_code(name: &str) -> Option<u16> {
    let name = name.trim();
    LEVEL_CODES
        .into_iter()
        .find(|&code| Consistency(code).name().eq_ignore_ascii_case(name))
}

/// `ALL`, or `consistency level 0x000B` for a code that names no level.
fn level_name(level: u16) -> String {
    match Consistency(level).name() {
        "UNKNOWN" => format!("consistency level 0x{level:04X}"),
        name => name.to_string(),
    }
}

impl RoleGuards {
    /// Compiles the bounds of `spec` for role `role`; errors point at the offending value.
    pub(crate) fn compile(
        text: &str,
        role: &str,
        spec: &GuardrailSpec,
    ) -> Result<RoleGuards, PolicyError> {
        let levels = |key: &str, names: &Option<Spanned<Names>>| -> Result<_, PolicyError> {
            let Some(names) = names else {
                return Ok(None);
            };
            let list = nonempty_entries(
                text,
                names,
                format!("{key} lists no level: name at least one (ONE, LOCAL_QUORUM, ...)"),
            )?;
            let mut mask = 0u32;
            let mut shown = String::new();
            for (name, span) in list {
                let code = level_code(name).ok_or_else(|| {
                    let all: Vec<&str> = LEVEL_CODES.map(|c| Consistency(c).name()).collect();
                    PolicyError::at(
                        text,
                        span,
                        format!(
                            "unknown consistency level {name:?} in {key} (levels: {})",
                            all.join(", ")
                        ),
                    )
                })?;
                if mask & (1 << code) == 0 {
                    mask |= 1 << code;
                    if !shown.is_empty() {
                        shown.push_str(", ");
                    }
                    shown.push_str(Consistency(code).name());
                }
            }
            let rule = format!(
                "role {role}: guardrail {key} = [{shown}] (line {})",
                line_of(text, names.span().start)
            );
            Ok(Some(Levels {
                mask,
                shown: shown.into(),
                rule: rule.into(),
            }))
        };
        let mut guards = RoleGuards {
            role: role.into(),
            read: levels("read_consistency", &spec.read_consistency)?,
            write: levels("write_consistency", &spec.write_consistency)?,
            limits: Default::default(),
        };
        for (bound, setting) in [
            (Bound::PageSize, &spec.max_page_size),
            (Bound::BatchStatements, &spec.max_batch_statements),
            (Bound::BatchBytes, &spec.max_batch_bytes),
            (Bound::StatementBytes, &spec.max_statement_bytes),
        ] {
            let Some(value) = setting else {
                continue;
            };
            let n = *value.get_ref();
            let max = u64::try_from(n).ok().filter(|&m| m > 0).ok_or_else(|| {
                PolicyError::at(
                    text,
                    value.span(),
                    format!("{} must be a positive integer, not {n}", bound.key()),
                )
            })?;
            let rule = format!(
                "role {role}: guardrail {} = {max} (line {})",
                bound.key(),
                line_of(text, value.span().start)
            );
            if let Some(slot) = guards.limits.get_mut(bound.index()) {
                *slot = Some(Limit {
                    max,
                    rule: rule.into(),
                });
            }
        }
        Ok(guards)
    }

    /// Whether the role sets no bound.
    pub(crate) fn is_empty(&self) -> bool {
        self.read.is_none() && self.write.is_none() && self.limits.iter().all(Option::is_none)
    }

    /// The rule texts of the role's bounds, in the order of the keys above.
    pub(crate) fn rules(&self) -> impl Iterator<Item = &str> {
        self.read
            .iter()
            .chain(self.write.iter())
            .map(|l| &*l.rule)
            .chain(self.limits.iter().flatten().map(|l| &*l.rule))
    }

    fn limit(&self, bound: Bound) -> Option<&Limit> {
        self.limits.get(bound.index()).and_then(Option::as_ref)
    }
}

/// Why a request was refused by a guardrail. The client gets ERROR 0x2200 (Invalid) with
/// `reason`, as Cassandra answers a request its own guardrails refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuardRefusal {
    /// The guardrail's key: `max_page_size`.
    pub guardrail: &'static str,
    /// The client's message: `Guardrail max_page_size violated: page size 10000 is above
    /// the limit 5000 of role reader`.
    pub reason: String,
    /// The rule that refused, for the audit log: `role reader: guardrail max_page_size =
    /// 5000 (line 4)`.
    pub rule: String,
}

/// The request bounds of one identity: every bound of every role it holds, in the
/// policy's order of roles. Obtained once per login ([`super::Policy::guards`]); cheap to
/// clone (one reference count, nothing when no role sets a bound), and a check allocates
/// only when it refuses.
#[derive(Clone, Debug, Default)]
pub struct Guards(Option<Arc<[Arc<RoleGuards>]>>);

impl Guards {
    pub(crate) fn new(roles: Vec<Arc<RoleGuards>>) -> Guards {
        if roles.is_empty() {
            Guards(None)
        } else {
            Guards(Some(roles.into()))
        }
    }

    fn roles(&self) -> &[Arc<RoleGuards>] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// Whether no bound applies: every check passes, the caller may skip them.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The consistency level of a read (`write == false`: SELECT) or a write (INSERT,
    /// UPDATE, DELETE, BATCH), as its wire code. Refused by the first role, in policy
    /// order, whose list does not hold it.
    pub fn check_consistency(&self, write: bool, level: u16) -> Result<(), GuardRefusal> {
        let (key, what) = if write {
            ("write_consistency", "writes")
        } else {
            ("read_consistency", "reads")
        };
        for g in self.roles() {
            let levels = if write { &g.write } else { &g.read };
            let Some(levels) = levels else {
                continue;
            };
            if !levels.allows(level) {
                return Err(GuardRefusal {
                    guardrail: key,
                    reason: format!(
                        "Guardrail {key} violated: {} is not allowed for {what} of role {} \
                         (allowed: {})",
                        level_name(level),
                        g.role,
                        levels.shown
                    ),
                    rule: levels.rule.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The page size of a SELECT: `None` or a size of 0 or less is an unpaged read, refused
    /// by any page size limit.
    pub fn check_page_size(&self, page_size: Option<i32>) -> Result<(), GuardRefusal> {
        let key = Bound::PageSize.key();
        let size = page_size
            .and_then(|n| u64::try_from(n).ok())
            .filter(|&n| n > 0);
        for g in self.roles() {
            let Some(limit) = g.limit(Bound::PageSize) else {
                continue;
            };
            let reason = match size {
                None => format!(
                    "Guardrail {key} violated: unpaged reads are not allowed for role {} \
                     (page size limit {})",
                    g.role, limit.max
                ),
                Some(n) if n > limit.max => format!(
                    "Guardrail {key} violated: page size {n} is above the limit {} of role {}",
                    limit.max, g.role
                ),
                Some(_) => continue,
            };
            return Err(GuardRefusal {
                guardrail: key,
                reason,
                rule: limit.rule.to_string(),
            });
        }
        Ok(())
    }

    /// A batch of `statements` children taking `bytes` bytes (a BATCH message's body, or
    /// the text of a `BEGIN BATCH ... APPLY BATCH` statement). The count is checked first.
    pub fn check_batch(&self, statements: usize, bytes: usize) -> Result<(), GuardRefusal> {
        self.check_limit(
            Bound::BatchStatements,
            statements,
            "a batch of",
            "statements",
        )?;
        self.check_limit(Bound::BatchBytes, bytes, "a batch of", "bytes")
    }

    /// The text of one statement: a QUERY's or a PREPARE's, or one child of a batch.
    pub fn check_statement_size(&self, bytes: usize) -> Result<(), GuardRefusal> {
        self.check_limit(Bound::StatementBytes, bytes, "a statement of", "bytes")
    }

    fn check_limit(
        &self,
        bound: Bound,
        value: usize,
        what: &str,
        unit: &str,
    ) -> Result<(), GuardRefusal> {
        let value = u64::try_from(value).unwrap_or(u64::MAX);
        for g in self.roles() {
            let Some(limit) = g.limit(bound) else {
                continue;
            };
            if value > limit.max {
                let key = bound.key();
                return Err(GuardRefusal {
                    guardrail: key,
                    reason: format!(
                        "Guardrail {key} violated: {what} {value} {unit} is above the limit {} \
                         of role {}",
                        limit.max, g.role
                    ),
                    rule: limit.rule.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Every bound that applies, as its rule text (`role reader: guardrail max_page_size =
    /// 5000 (line 4)`), by role in policy order, then in the order of the keys:
    /// read_consistency, write_consistency, max_page_size, max_batch_statements,
    /// max_batch_bytes, max_statement_bytes.
    pub fn describe(&self) -> Vec<String> {
        self.roles()
            .iter()
            .flat_map(|g| g.rules().map(str::to_string))
            .collect()
    }
}
