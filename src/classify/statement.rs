//! What the classifier returns: a statement's kind, audit naming, needs, names and flags.

use std::borrow::Cow;
use std::fmt;

use super::permission::Permission;
use super::resource::Resource;

named_enum! {
    /// The statement kinds of CQL as of Cassandra 5.0.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Kind {
        Select,
        Insert,
        Update,
        Delete,
        Batch,
        Truncate,
        Use,
        CreateKeyspace,
        AlterKeyspace,
        DropKeyspace,
        CreateTable,
        AlterTable,
        DropTable,
        CreateIndex,
        DropIndex,
        CreateType,
        AlterType,
        DropType,
        CreateFunction,
        DropFunction,
        CreateAggregate,
        DropAggregate,
        CreateMaterializedView,
        AlterMaterializedView,
        DropMaterializedView,
        CreateTrigger,
        DropTrigger,
        CreateRole,
        AlterRole,
        DropRole,
        CreateUser,
        AlterUser,
        DropUser,
        GrantPermission,
        RevokePermission,
        GrantRole,
        RevokeRole,
        ListRoles,
        ListUsers,
        ListSuperusers,
        ListPermissions,
        AddIdentity,
        DropIdentity,
        Describe,
        /// Not recognised, or not valid CQL: [`Statement::unparsed`] says why and
        /// [`Statement::rejection`] how Cassandra would answer it. A denial.
        Unparsed,
    }
    /// Every kind, for tests and tools.
    ALL;
    /// The Rust variant name (`CreateMaterializedView`), used by the corpus and logs.
    fn name;
}

impl Kind {
    /// The operation type Cassandra's audit log records for this kind
    /// (`AuditLogEntryType`). As in Cassandra, INSERT is logged as `UPDATE`
    /// (both are an `UpdateStatement` there); [`Kind::Insert`] keeps them apart for policies.
    /// USER statements are logged as the ROLE operations they are in Cassandra,
    /// LIST SUPERUSERS as `LIST_ROLES`, ADD/DROP IDENTITY as `CREATE_IDENTITY`/`DROP_IDENTITY`.
    pub fn operation(self) -> Operation {
        use Operation as O;
        match self {
            Kind::Select => O::Select,
            Kind::Insert | Kind::Update => O::Update,
            Kind::Delete => O::Delete,
            Kind::Batch => O::Batch,
            Kind::Truncate => O::Truncate,
            Kind::Use => O::UseKeyspace,
            Kind::CreateKeyspace => O::CreateKeyspace,
            Kind::AlterKeyspace => O::AlterKeyspace,
            Kind::DropKeyspace => O::DropKeyspace,
            Kind::CreateTable => O::CreateTable,
            Kind::AlterTable => O::AlterTable,
            Kind::DropTable => O::DropTable,
            Kind::CreateIndex => O::CreateIndex,
            Kind::DropIndex => O::DropIndex,
            Kind::CreateType => O::CreateType,
            Kind::AlterType => O::AlterType,
            Kind::DropType => O::DropType,
            Kind::CreateFunction => O::CreateFunction,
            Kind::DropFunction => O::DropFunction,
            Kind::CreateAggregate => O::CreateAggregate,
            Kind::DropAggregate => O::DropAggregate,
            Kind::CreateMaterializedView => O::CreateView,
            Kind::AlterMaterializedView => O::AlterView,
            Kind::DropMaterializedView => O::DropView,
            Kind::CreateTrigger => O::CreateTrigger,
            Kind::DropTrigger => O::DropTrigger,
            Kind::CreateRole | Kind::CreateUser => O::CreateRole,
            Kind::AlterRole | Kind::AlterUser => O::AlterRole,
            Kind::DropRole | Kind::DropUser => O::DropRole,
            Kind::GrantPermission | Kind::GrantRole => O::Grant,
            Kind::RevokePermission | Kind::RevokeRole => O::Revoke,
            Kind::ListRoles | Kind::ListSuperusers => O::ListRoles,
            Kind::ListUsers => O::ListUsers,
            Kind::ListPermissions => O::ListPermissions,
            Kind::AddIdentity => O::CreateIdentity,
            Kind::DropIdentity => O::DropIdentity,
            Kind::Describe => O::Describe,
            Kind::Unparsed => O::RequestFailure,
        }
    }
}

named_enum! {
    /// Cassandra's audit log categories (`AuditLogEntryCategory`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Category {
        Query => "QUERY",
        Dml => "DML",
        Ddl => "DDL",
        Dcl => "DCL",
        Auth => "AUTH",
        Prepare => "PREPARE",
        Error => "ERROR",
        Other => "OTHER",
    }
    /// Every category.
    ALL;
    /// The name as Cassandra prints it (`DML`).
    fn as_str;
}

named_enum! {
    /// Cassandra's audit log operation types (`AuditLogEntryType`), named as it prints them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Operation {
        Select => "SELECT",
        Update => "UPDATE",
        Delete => "DELETE",
        Truncate => "TRUNCATE",
        Batch => "BATCH",
        UseKeyspace => "USE_KEYSPACE",
        CreateKeyspace => "CREATE_KEYSPACE",
        AlterKeyspace => "ALTER_KEYSPACE",
        DropKeyspace => "DROP_KEYSPACE",
        CreateTable => "CREATE_TABLE",
        AlterTable => "ALTER_TABLE",
        DropTable => "DROP_TABLE",
        CreateIndex => "CREATE_INDEX",
        DropIndex => "DROP_INDEX",
        CreateType => "CREATE_TYPE",
        AlterType => "ALTER_TYPE",
        DropType => "DROP_TYPE",
        CreateFunction => "CREATE_FUNCTION",
        DropFunction => "DROP_FUNCTION",
        CreateAggregate => "CREATE_AGGREGATE",
        DropAggregate => "DROP_AGGREGATE",
        CreateView => "CREATE_VIEW",
        AlterView => "ALTER_VIEW",
        DropView => "DROP_VIEW",
        CreateTrigger => "CREATE_TRIGGER",
        DropTrigger => "DROP_TRIGGER",
        CreateRole => "CREATE_ROLE",
        AlterRole => "ALTER_ROLE",
        DropRole => "DROP_ROLE",
        Grant => "GRANT",
        Revoke => "REVOKE",
        ListRoles => "LIST_ROLES",
        ListUsers => "LIST_USERS",
        ListPermissions => "LIST_PERMISSIONS",
        CreateIdentity => "CREATE_IDENTITY",
        DropIdentity => "DROP_IDENTITY",
        Describe => "DESCRIBE",
        /// What Cassandra logs for a PREPARE (category PREPARE); the caller applies it to
        /// PREPARE requests, the classifier never returns it.
        PrepareStatement => "PREPARE_STATEMENT",
        /// What Cassandra logs for a request that failed (category ERROR); the classifier returns it
        /// for unparsed text.
        RequestFailure => "REQUEST_FAILURE",
        LoginSuccess => "LOGIN_SUCCESS",
        LoginError => "LOGIN_ERROR",
        UnauthorizedAttempt => "UNAUTHORIZED_ATTEMPT",
    }
    /// Every operation type.
    ALL;
    /// The name as Cassandra prints it (`CREATE_TABLE`).
    fn as_str;
}

impl Operation {
    /// The category Cassandra files this operation under.
    pub fn category(self) -> Category {
        use Operation as O;
        match self {
            O::Select => Category::Query,
            O::Update | O::Delete | O::Batch => Category::Dml,
            O::Truncate
            | O::CreateKeyspace
            | O::AlterKeyspace
            | O::DropKeyspace
            | O::CreateTable
            | O::AlterTable
            | O::DropTable
            | O::CreateIndex
            | O::DropIndex
            | O::CreateType
            | O::AlterType
            | O::DropType
            | O::CreateFunction
            | O::DropFunction
            | O::CreateAggregate
            | O::DropAggregate
            | O::CreateView
            | O::AlterView
            | O::DropView
            | O::CreateTrigger
            | O::DropTrigger => Category::Ddl,
            O::CreateRole
            | O::AlterRole
            | O::DropRole
            | O::Grant
            | O::Revoke
            | O::ListRoles
            | O::ListUsers
            | O::ListPermissions
            | O::CreateIdentity
            | O::DropIdentity => Category::Dcl,
            O::UseKeyspace | O::Describe => Category::Other,
            O::PrepareStatement => Category::Prepare,
            O::RequestFailure => Category::Error,
            O::LoginSuccess | O::LoginError | O::UnauthorizedAttempt => Category::Auth,
        }
    }
}

named_enum! {
    /// How Cassandra itself answers a text the classifier leaves [`Kind::Unparsed`], so that
    /// the proxy can answer it the same way (it is never forwarded).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Rejection {
        /// Not CQL by Cassandra's grammar (`Cql.g`, `Lexer.g`): Cassandra answers ERROR 0x2000
        /// `SyntaxException`. The reason reads like Cassandra's, with the position where the
        /// text stops being CQL: `line 1:9 mismatched input 'FORM' expecting FROM`.
        Syntax => "syntax",
        /// CQL that Cassandra refuses as an invalid request (ERROR 0x2200 `InvalidRequest`)
        /// before anything runs: no keyspace for an unqualified name, a materialized view
        /// outside its base table's keyspace. The reason is Cassandra's sentence, without a
        /// position.
        Invalid => "invalid",
        /// CQL beyond what the classifier decides (brackets nested deeper than
        /// [`super::parser::MAX_NESTING`], more than [`super::parser::MAX_CALLS`] functions, an
        /// empty batch, which needs no permission): Cassandra might run it, the proxy refuses it.
        Unsupported => "unsupported",
    }
    /// Every rejection.
    ALL;
    /// The rejection's name (`syntax`).
    fn as_str;
}

/// Facts about a statement that a policy can use as guardrails (a bit set, `Copy`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u16);

impl Flags {
    pub const EMPTY: Flags = Flags(0);
    /// `ALLOW FILTERING` on a SELECT (or on the SELECT of a materialized view).
    pub const ALLOW_FILTERING: Flags = Flags(1 << 0);
    /// A lightweight transaction: a write with `IF NOT EXISTS`, `IF EXISTS` or `IF cond`
    /// (or a batch holding one).
    pub const CONDITIONAL: Flags = Flags(1 << 1);
    /// `BEGIN UNLOGGED BATCH`.
    pub const UNLOGGED_BATCH: Flags = Flags(1 << 2);
    /// `BEGIN COUNTER BATCH`.
    pub const COUNTER_BATCH: Flags = Flags(1 << 3);
    /// `USING TIMESTAMP` (on a write or a batch).
    pub const USING_TIMESTAMP: Flags = Flags(1 << 4);
    /// `USING TTL` (on a write).
    pub const USING_TTL: Flags = Flags(1 << 5);
    /// `SELECT JSON` or `INSERT ... JSON`.
    pub const JSON: Flags = Flags(1 << 6);
    /// `SELECT DISTINCT`.
    pub const DISTINCT: Flags = Flags(1 << 7);
    /// The statement has a WHERE clause, so it may restrict masked columns: a policy that
    /// knows a table's masked columns can ask for SELECT_MASKED then.
    pub const WHERE: Flags = Flags(1 << 8);
    /// DDL with `IF NOT EXISTS` / `IF EXISTS` (not a lightweight transaction).
    pub const IF_EXISTS: Flags = Flags(1 << 9);
    /// DDL that sets or removes a dynamic data mask (`MASKED WITH`, `DROP MASKED`).
    pub const MASKING: Flags = Flags(1 << 10);
    /// Cassandra allows this statement to superusers only (triggers, `SUPERUSER = true`).
    pub const SUPERUSER_ONLY: Flags = Flags(1 << 11);
    /// `DESCRIBE ... WITH INTERNALS` or `DESCRIBE FULL SCHEMA`.
    pub const INTERNALS: Flags = Flags(1 << 12);
    /// The statement uses bind markers (`?` or `:name`).
    pub const BIND_MARKERS: Flags = Flags(1 << 13);

    const NAMES: [(Flags, &'static str); 14] = [
        (Flags::ALLOW_FILTERING, "ALLOW_FILTERING"),
        (Flags::CONDITIONAL, "CONDITIONAL"),
        (Flags::UNLOGGED_BATCH, "UNLOGGED_BATCH"),
        (Flags::COUNTER_BATCH, "COUNTER_BATCH"),
        (Flags::USING_TIMESTAMP, "USING_TIMESTAMP"),
        (Flags::USING_TTL, "USING_TTL"),
        (Flags::JSON, "JSON"),
        (Flags::DISTINCT, "DISTINCT"),
        (Flags::WHERE, "WHERE"),
        (Flags::IF_EXISTS, "IF_EXISTS"),
        (Flags::MASKING, "MASKING"),
        (Flags::SUPERUSER_ONLY, "SUPERUSER_ONLY"),
        (Flags::INTERNALS, "INTERNALS"),
        (Flags::BIND_MARKERS, "BIND_MARKERS"),
    ];

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn bits(self) -> u16 {
        self.0
    }

    /// The names of the set flags (`"ALLOW_FILTERING"`, ...).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMES
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }

    /// Parses one flag name as [`Flags::names`] prints it.
    pub fn from_name(name: &str) -> Option<Flags> {
        Flags::NAMES
            .into_iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(f, _)| f)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// One permission a statement needs on one resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Need<'a> {
    pub permission: Permission,
    pub resource: Resource<'a>,
}

impl fmt::Display for Need<'_> {
    /// `MODIFY <table demo.users>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.permission, self.resource)
    }
}

/// One classified statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement<'a> {
    pub kind: Kind,
    /// Cassandra's audit category (for a PREPARE request the caller logs
    /// [`Category::Prepare`] instead).
    pub category: Category,
    /// Cassandra's audit operation type.
    pub operation: Operation,
    /// Every (permission, resource) pair the statement needs, without duplicates, in the order
    /// Cassandra checks them. Empty only for [`Kind::Unparsed`].
    pub needs: Vec<Need<'a>>,
    /// The keyspace the statement mainly concerns (resolved against the current keyspace).
    pub keyspace: Option<Cow<'a, str>>,
    /// The table (or view) the statement mainly concerns, in [`Statement::keyspace`].
    pub table: Option<Cow<'a, str>>,
    /// The role the statement concerns: the role created, altered, dropped, granted to or
    /// revoked from, or listed with `OF`. A policy uses it for "a role may list its own roles".
    pub role: Option<Cow<'a, str>>,
    pub flags: Flags,
    /// The statements of an inline BATCH, each classified on its own.
    pub children: Vec<Statement<'a>>,
    /// Why the text was not classified ([`Kind::Unparsed`] only): a sentence for a person.
    pub unparsed: Option<String>,
    /// How Cassandra would answer the text ([`Kind::Unparsed`] only).
    pub rejection: Option<Rejection>,
}

impl<'a> Statement<'a> {
    pub(crate) fn new(kind: Kind) -> Statement<'a> {
        let operation = kind.operation();
        Statement {
            kind,
            category: operation.category(),
            operation,
            needs: Vec::new(),
            keyspace: None,
            table: None,
            role: None,
            flags: Flags::EMPTY,
            children: Vec::new(),
            unparsed: None,
            rejection: None,
        }
    }

    /// A statement that was not classified: how Cassandra would answer it, and why.
    pub fn unparsed(rejection: Rejection, reason: impl Into<String>) -> Statement<'a> {
        let mut s = Statement::new(Kind::Unparsed);
        s.unparsed = Some(reason.into());
        s.rejection = Some(rejection);
        s
    }

    pub fn is_unparsed(&self) -> bool {
        self.kind == Kind::Unparsed
    }

    /// The reason, when the text is not CQL by Cassandra's grammar ([`Rejection::Syntax`]):
    /// what Cassandra would answer with ERROR 0x2000 `SyntaxException`, e.g.
    /// `line 1:0 no viable alternative at input 'SELEKT'`. `None` for a classified
    /// statement and for the other rejections.
    pub fn syntax_error(&self) -> Option<&str> {
        self.reason_if(Rejection::Syntax)
    }

    /// The reason, when Cassandra would refuse the text as an invalid request
    /// ([`Rejection::Invalid`], ERROR 0x2200 `InvalidRequest`), e.g. `No keyspace has been
    /// specified. USE a keyspace, or explicitly specify keyspace.tablename`.
    pub fn invalid_request(&self) -> Option<&str> {
        self.reason_if(Rejection::Invalid)
    }

    fn reason_if(&self, rejection: Rejection) -> Option<&str> {
        match (self.kind, self.rejection) {
            (Kind::Unparsed, Some(r)) if r == rejection => self.unparsed.as_deref(),
            _ => None,
        }
    }

    /// Copies borrowed names so the statement outlives its text (e.g. to cache it).
    pub fn into_owned(self) -> Statement<'static> {
        fn o(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            c.map(|c| Cow::Owned(c.into_owned()))
        }
        Statement {
            kind: self.kind,
            category: self.category,
            operation: self.operation,
            needs: self
                .needs
                .into_iter()
                .map(|n| Need {
                    permission: n.permission,
                    resource: n.resource.into_owned(),
                })
                .collect(),
            keyspace: o(self.keyspace),
            table: o(self.table),
            role: o(self.role),
            flags: self.flags,
            children: self
                .children
                .into_iter()
                .map(Statement::into_owned)
                .collect(),
            unparsed: self.unparsed,
            rejection: self.rejection,
        }
    }

    /// The statement, needing `permission` on the keyspace `ks`, which it concerns.
    pub(crate) fn with_keyspace_need(
        mut self,
        permission: Permission,
        ks: Cow<'a, str>,
    ) -> Statement<'a> {
        self.need(permission, Resource::Keyspace(ks.clone()));
        self.keyspace = Some(ks);
        self
    }

    /// The statement, needing `permission` on the table `ks.t`, which it concerns.
    pub(crate) fn with_table_need(
        mut self,
        permission: Permission,
        ks: Cow<'a, str>,
        t: Cow<'a, str>,
    ) -> Statement<'a> {
        self.need(
            permission,
            Resource::Table {
                keyspace: ks.clone(),
                table: t.clone(),
            },
        );
        self.keyspace = Some(ks);
        self.table = Some(t);
        self
    }

    /// The statement, needing `permission` on the role `role`, which it concerns.
    pub(crate) fn with_role_need(
        mut self,
        permission: Permission,
        role: Cow<'a, str>,
    ) -> Statement<'a> {
        self.need(permission, Resource::Role(role.clone()));
        self.role = Some(role);
        self
    }

    /// Adds a need unless it is already there.
    pub(crate) fn need(&mut self, permission: Permission, resource: Resource<'a>) {
        if !self
            .needs
            .iter()
            .any(|n| n.permission == permission && n.resource == resource)
        {
            self.needs.push(Need {
                permission,
                resource,
            });
        }
    }
}
