//! The in-memory schema, data and statement execution.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use crate::cql::{self, Cond, Op, QName, Rhs, Selector, SetOp, Statement, Term};
use crate::system;
use crate::token;
use crate::types::{decode_collection, encode_collection, parse_timestamp, ColType};
use crate::util;
use crate::wire::BoundValue;

pub const ERR_PROTOCOL: i32 = 0x000A;
pub const ERR_BAD_CREDENTIALS: i32 = 0x0100;
pub const ERR_SYNTAX: i32 = 0x2000;
pub const ERR_INVALID: i32 = 0x2200;
pub const ERR_ALREADY_EXISTS: i32 = 0x2400;
pub const ERR_UNPREPARED: i32 = 0x2500;

/// An error answered with an ERROR message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CqlError {
    pub code: i32,
    pub message: String,
    /// Code-specific fields, already serialized.
    pub extra: Vec<u8>,
}

impl CqlError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CqlError {
            code,
            message: message.into(),
            extra: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ERR_INVALID, message)
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(ERR_SYNTAX, message)
    }

    pub fn already_exists(ks: &str, table: &str) -> Self {
        let message = if table.is_empty() {
            format!("Cannot add already existing keyspace \"{ks}\"")
        } else {
            format!("Cannot add already existing table \"{table}\" to keyspace \"{ks}\"")
        };
        let mut extra = Vec::new();
        crate::wire::put_string(&mut extra, ks);
        crate::wire::put_string(&mut extra, table);
        CqlError {
            code: ERR_ALREADY_EXISTS,
            message,
            extra,
        }
    }

    pub fn unprepared(id: &[u8]) -> Self {
        let mut extra = Vec::new();
        crate::wire::put_short_bytes(&mut extra, id);
        CqlError {
            code: ERR_UNPREPARED,
            message: format!(
                "Prepared query with ID {} not found (either the query was not prepared on this host (maybe the host has been restarted?) or you have prepared too many queries and it has been evicted from the internal cache)",
                util::hex(id)
            ),
            extra,
        }
    }
}

pub type QResult<T> = Result<T, CqlError>;

pub type Cells = Vec<Option<Vec<u8>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PartitionKey,
    Clustering,
    Regular,
    Static,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColType,
    pub kind: Kind,
    /// Position within the partition key or clustering key.
    pub position: usize,
    pub desc: bool,
}

#[derive(Debug, Clone)]
pub struct TableSchema {
    pub keyspace: String,
    pub name: String,
    pub id: [u8; 16],
    /// In `SELECT *` order: partition key, clustering, then the others by name.
    pub columns: Vec<Column>,
    pub pk: Vec<usize>,
    pub ck: Vec<usize>,
    pub comment: String,
}

impl TableSchema {
    pub fn new(
        keyspace: &str,
        name: &str,
        cols: Vec<(String, ColType, bool)>,
        pk: &[String],
        ck: &[String],
        descending: &[String],
    ) -> Result<TableSchema, String> {
        let mut columns = Vec::new();
        for (i, p) in pk.iter().enumerate() {
            let (_, ty, _) = cols
                .iter()
                .find(|c| &c.0 == p)
                .ok_or_else(|| format!("Unknown definition {p} referenced in PRIMARY KEY"))?;
            columns.push(Column {
                name: p.clone(),
                ty: ty.clone(),
                kind: Kind::PartitionKey,
                position: i,
                desc: false,
            });
        }
        for (i, c) in ck.iter().enumerate() {
            let (_, ty, _) = cols
                .iter()
                .find(|x| &x.0 == c)
                .ok_or_else(|| format!("Unknown definition {c} referenced in PRIMARY KEY"))?;
            columns.push(Column {
                name: c.clone(),
                ty: ty.clone(),
                kind: Kind::Clustering,
                position: i,
                desc: descending.contains(c),
            });
        }
        let mut rest: Vec<_> = cols
            .iter()
            .filter(|c| !pk.contains(&c.0) && !ck.contains(&c.0))
            .collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, ty, st) in rest {
            columns.push(Column {
                name: name.clone(),
                ty: ty.clone(),
                kind: if *st { Kind::Static } else { Kind::Regular },
                position: 0,
                desc: false,
            });
        }
        let id = util::md5(&[keyspace.as_bytes(), b".", name.as_bytes()]);
        Ok(TableSchema {
            keyspace: keyspace.into(),
            name: name.into(),
            id,
            pk: (0..pk.len()).collect(),
            ck: (pk.len()..pk.len() + ck.len()).collect(),
            columns,
            comment: String::new(),
        })
    }

    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    fn col_or_err(&self, name: &str) -> QResult<usize> {
        self.col(name)
            .ok_or_else(|| CqlError::invalid(format!("Undefined column name {name}")))
    }
}

#[derive(Debug, Clone, Default)]
struct Row {
    cells: Cells,
    marker: bool,
}

#[derive(Debug, Default)]
struct Partition {
    statics: Cells,
    rows: BTreeMap<Vec<u8>, Row>,
}

pub struct Table {
    pub schema: Arc<TableSchema>,
    data: Mutex<BTreeMap<Vec<u8>, Partition>>,
}

pub struct Keyspace {
    pub name: String,
    pub replication: Vec<(String, String)>,
    pub durable_writes: bool,
    pub tables: BTreeMap<String, Arc<Table>>,
}

pub struct Schema {
    pub keyspaces: BTreeMap<String, Keyspace>,
    pub version: [u8; 16],
}

/// A schema change, for RESULT Schema_change and EVENT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChange {
    pub change: &'static str,
    pub target: &'static str,
    pub keyspace: String,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ResultSet {
    pub keyspace: String,
    pub table: String,
    pub columns: Vec<(String, ColType)>,
    pub rows: Vec<Cells>,
    pub paging_state: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Void,
    Rows(ResultSet),
    SetKeyspace(String),
    SchemaChange(SchemaChange),
}

/// What a prepared statement needs at EXECUTE time.
/// (keyspace, table, columns) of a result.
pub type ResultMeta = (String, String, Vec<(String, ColType)>);

pub struct Prepared {
    pub id: [u8; 16],
    pub keyspace: Option<String>,
    pub parsed: cql::Parsed,
    /// (keyspace, table, name, type) of each bind marker.
    pub binds: Vec<(String, String, String, ColType)>,
    pub pk_indexes: Vec<u16>,
    pub result: Option<ResultMeta>,
    pub result_metadata_id: [u8; 16],
}

/// Options of a QUERY or EXECUTE that matter to execution.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub values: Vec<BoundValue>,
    pub names: Option<Vec<String>>,
    pub page_size: Option<i32>,
    pub paging_state: Option<Vec<u8>>,
    /// The index in `Db::nodes` of the node serving the request: system.local is that
    /// node and system.peers the others.
    pub node: usize,
}

/// What a registered connection may be told (EVENT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// SCHEMA_CHANGE, after DDL.
    Schema(SchemaChange),
    /// STATUS_CHANGE: the node at this index of `Db::nodes` went UP (true) or DOWN.
    Status { node: usize, up: bool },
}

/// What a statement addresses, for the record of what each node served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// `keyspace.table` of the statement's table.
    pub table: Option<String>,
    /// The serialized partition key components, in partition key order, when the
    /// statement gives every one of them a single value and the table is a user table.
    pub key: Option<Vec<Vec<u8>>>,
}

pub struct Db {
    pub schema: RwLock<Schema>,
    prepared: Mutex<HashMap<[u8; 16], Arc<Prepared>>>,
    pub events: tokio::sync::broadcast::Sender<Event>,
    /// Every node of the cluster this store is served by (one in single-node mode).
    pub nodes: Vec<system::NodeInfo>,
    ring: token::Ring,
}

enum Cell {
    Val(Vec<u8>),
    Null,
    Unset,
}

enum TableRef {
    User(Arc<Table>),
    System(Arc<TableSchema>),
}

impl TableRef {
    fn schema(&self) -> Arc<TableSchema> {
        match self {
            TableRef::User(t) => t.schema.clone(),
            TableRef::System(s) => s.clone(),
        }
    }
}

const PAGING_MAGIC: &[u8; 4] = b"dvs1";

impl Db {
    /// An empty store served by `nodes` (at least one).
    pub fn new(nodes: Vec<system::NodeInfo>) -> Db {
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let tokens: Vec<Vec<i64>> = nodes.iter().map(|n| n.tokens.clone()).collect();
        Db {
            schema: RwLock::new(Schema {
                keyspaces: BTreeMap::new(),
                version: util::uuid_v4(),
            }),
            prepared: Mutex::new(HashMap::new()),
            events,
            nodes,
            ring: token::Ring::new(&tokens),
        }
    }

    /// The index in `nodes` of the node owning a token.
    pub fn owner(&self, token: i64) -> Option<usize> {
        self.ring.owner(token)
    }

    /// The table and partition key a statement addresses, with its bound values (as the
    /// served record of the control port shows it). The first child of a BATCH counts.
    pub fn routing(
        &self,
        parsed: &cql::Parsed,
        session_ks: Option<&str>,
        opts: &ExecOptions,
    ) -> Routing {
        let stmt = match &parsed.stmt {
            Statement::Batch(children) => children.first(),
            s => Some(s),
        };
        let Some(q) = stmt.and_then(prepared_table) else {
            return Routing::default();
        };
        let Ok(tref) = self.resolve(q, session_ks) else {
            return Routing::default();
        };
        let s = tref.schema();
        let key = match (&tref, stmt) {
            (TableRef::User(_), Some(stmt)) => arrange_values(parsed, opts)
                .ok()
                .and_then(|values| routing_key(&s, stmt, &Ctx { values: &values })),
            _ => None,
        };
        Routing {
            table: Some(format!("{}.{}", s.keyspace, s.name)),
            key,
        }
    }

    fn read_schema(&self) -> std::sync::RwLockReadGuard<'_, Schema> {
        self.schema.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_schema(&self) -> std::sync::RwLockWriteGuard<'_, Schema> {
        self.schema.write().unwrap_or_else(|e| e.into_inner())
    }

    fn resolve(&self, q: &QName, session_ks: Option<&str>) -> QResult<TableRef> {
        let ks = match (&q.keyspace, session_ks) {
            (Some(k), _) => k.as_str(),
            (None, Some(k)) => k,
            (None, None) => {
                return Err(CqlError::invalid(
                    "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename",
                ))
            }
        };
        if let Some(t) = system::table(ks, &q.name) {
            return Ok(TableRef::System(t));
        }
        let schema = self.read_schema();
        let k = match schema.keyspaces.get(ks) {
            Some(k) => k,
            None if system::is_system_keyspace(ks) => {
                return Err(CqlError::invalid(format!(
                    "table {} does not exist",
                    q.name
                )))
            }
            None => return Err(CqlError::invalid(format!("keyspace {ks} does not exist"))),
        };
        match k.tables.get(&q.name) {
            Some(t) => Ok(TableRef::User(t.clone())),
            None => Err(CqlError::invalid(format!(
                "table {} does not exist",
                q.name
            ))),
        }
    }

    // ------------------------------------------------------------ prepare

    pub fn prepare(&self, query: &str, session_ks: Option<&str>) -> QResult<Arc<Prepared>> {
        let parsed = cql::parse(query).map_err(|e| CqlError::syntax(e.0))?;
        let id = match session_ks {
            Some(k) => util::md5(&[k.as_bytes(), query.as_bytes()]),
            None => util::md5(&[query.as_bytes()]),
        };
        let mut binds: Vec<Option<(String, String, String, ColType)>> = vec![None; parsed.markers];
        let mut pk_indexes = Vec::new();
        let mut result = None;
        let table_of =
            |q: &QName| -> QResult<Arc<TableSchema>> { Ok(self.resolve(q, session_ks)?.schema()) };
        match &parsed.stmt {
            Statement::Select {
                table,
                selectors,
                conds,
                limit,
            } => {
                let s = table_of(table)?;
                bind_conds(&s, conds, &mut binds)?;
                if let Some(Term::Bind(i)) = limit {
                    set_bind(&mut binds, *i, &s, "[limit]", ColType::Int);
                }
                let (cols, _) = select_plan(&s, selectors.as_deref())?;
                result = Some((s.keyspace.clone(), s.name.clone(), cols));
            }
            Statement::Insert {
                table,
                columns,
                values,
                if_not_exists,
            } => {
                let s = table_of(table)?;
                for (c, v) in columns.iter().zip(values) {
                    let ci = s.col_or_err(c)?;
                    bind_term(&s, v, &s.columns[ci].name, &s.columns[ci].ty, &mut binds);
                }
                if *if_not_exists {
                    result = Some((s.keyspace.clone(), s.name.clone(), applied_cols(&s)));
                }
            }
            Statement::Update {
                table,
                sets,
                conds,
                if_exists,
            } => {
                let s = table_of(table)?;
                for (c, op) in sets {
                    let ci = s.col_or_err(c)?;
                    let col = &s.columns[ci];
                    match op {
                        SetOp::Assign(t) | SetOp::Add(t) | SetOp::Prepend(t) => {
                            bind_term(&s, t, &col.name, &col.ty, &mut binds)
                        }
                        SetOp::Remove(t) => {
                            let ty = match &col.ty {
                                ColType::Map(k, _) => ColType::Set(k.clone()),
                                t => t.clone(),
                            };
                            bind_term(&s, t, &col.name, &ty, &mut binds)
                        }
                        SetOp::Element(k, v) => {
                            let (kt, vt) = element_types(&col.ty);
                            bind_term(&s, k, &format!("key({})", col.name), &kt, &mut binds);
                            bind_term(&s, v, &format!("value({})", col.name), &vt, &mut binds);
                        }
                    }
                }
                bind_conds(&s, conds, &mut binds)?;
                if *if_exists {
                    result = Some((s.keyspace.clone(), s.name.clone(), applied_cols(&s)));
                }
            }
            Statement::Delete { table, conds, .. } => {
                let s = table_of(table)?;
                bind_conds(&s, conds, &mut binds)?;
            }
            _ => {}
        }
        // Partition key indexes: the marker bound to each partition key column, in order.
        if let Some(s) = prepared_table(&parsed.stmt).and_then(|q| table_of(q).ok()) {
            for &pki in &s.pk {
                let name = &s.columns[pki].name;
                match binds
                    .iter()
                    .position(|b| b.as_ref().is_some_and(|b| &b.2 == name))
                {
                    Some(i) => pk_indexes.push(i as u16),
                    None => {
                        pk_indexes.clear();
                        break;
                    }
                }
            }
        }
        let binds: Vec<_> = binds
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                b.unwrap_or_else(|| {
                    (
                        session_ks.unwrap_or("").to_string(),
                        String::new(),
                        format!("arg{i}"),
                        ColType::Blob,
                    )
                })
            })
            .collect();
        let result_metadata_id = metadata_id(result.as_ref().map(|r| r.2.as_slice()));
        let p = Arc::new(Prepared {
            id,
            keyspace: session_ks.map(str::to_string),
            parsed,
            binds,
            pk_indexes,
            result,
            result_metadata_id,
        });
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, p.clone());
        Ok(p)
    }

    pub fn get_prepared(&self, id: &[u8]) -> Option<Arc<Prepared>> {
        let id: [u8; 16] = id.try_into().ok()?;
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    // ------------------------------------------------------------ execute

    #[cfg(test)]
    pub fn execute_text(
        &self,
        query: &str,
        session_ks: Option<&str>,
        opts: &ExecOptions,
    ) -> QResult<Outcome> {
        let parsed = cql::parse(query).map_err(|e| CqlError::syntax(e.0))?;
        self.execute(&parsed, session_ks, opts)
    }

    pub fn execute(
        &self,
        parsed: &cql::Parsed,
        session_ks: Option<&str>,
        opts: &ExecOptions,
    ) -> QResult<Outcome> {
        let values = arrange_values(parsed, opts)?;
        let ctx = Ctx { values: &values };
        match &parsed.stmt {
            Statement::Use(ks) => {
                if self.read_schema().keyspaces.contains_key(ks) || system::is_system_keyspace(ks) {
                    Ok(Outcome::SetKeyspace(ks.clone()))
                } else {
                    Err(CqlError::invalid(format!("Keyspace '{ks}' does not exist")))
                }
            }
            Statement::Select { .. } => self.select(&parsed.stmt, session_ks, &ctx, opts),
            Statement::Insert { .. } | Statement::Update { .. } | Statement::Delete { .. } => {
                self.modify(&parsed.stmt, session_ks, &ctx)
            }
            Statement::Batch(stmts) => {
                for s in stmts {
                    self.modify(s, session_ks, &ctx)?;
                }
                Ok(Outcome::Void)
            }
            Statement::Truncate(q) => match self.resolve(q, session_ks)? {
                TableRef::User(t) => {
                    t.data.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    Ok(Outcome::Void)
                }
                TableRef::System(_) => Err(CqlError::new(0x2100, "Cannot TRUNCATE a system table")),
            },
            Statement::AccessControl => Ok(Outcome::Void),
            Statement::Describe(_) => Err(CqlError::invalid(
                "DESCRIBE is not supported by cql-devserver",
            )),
            Statement::CreateKeyspace {
                name,
                if_not_exists,
                replication,
                durable_writes,
            } => self.create_keyspace(name, *if_not_exists, replication, *durable_writes),
            Statement::DropKeyspace { name, if_exists } => {
                let mut s = self.write_schema();
                if s.keyspaces.remove(name).is_none() {
                    if *if_exists {
                        return Ok(Outcome::Void);
                    }
                    return Err(CqlError::new(
                        0x2300,
                        format!("Cannot drop non existing keyspace '{name}'."),
                    ));
                }
                s.version = util::uuid_v4();
                drop(s);
                Ok(self.changed("DROPPED", "KEYSPACE", name, None))
            }
            Statement::CreateTable {
                table,
                if_not_exists,
                columns,
                partition_key,
                clustering,
                descending,
            } => {
                let ks = table.keyspace.as_deref().or(session_ks).ok_or_else(|| {
                    CqlError::invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
                })?;
                if system::is_system_keyspace(ks) {
                    return Err(CqlError::new(
                        0x2100,
                        format!("{ks} keyspace is not user-modifiable."),
                    ));
                }
                if partition_key.is_empty() {
                    return Err(CqlError::invalid(
                        "No PRIMARY KEY specifed for table (exactly one required)",
                    ));
                }
                let cols = columns
                    .iter()
                    .map(|c| (c.name.clone(), c.ty.clone(), c.is_static))
                    .collect();
                let schema =
                    TableSchema::new(ks, &table.name, cols, partition_key, clustering, descending)
                        .map_err(CqlError::invalid)?;
                let mut s = self.write_schema();
                let k = s
                    .keyspaces
                    .get_mut(ks)
                    .ok_or_else(|| CqlError::invalid(format!("keyspace {ks} does not exist")))?;
                if k.tables.contains_key(&table.name) {
                    if *if_not_exists {
                        return Ok(Outcome::Void);
                    }
                    return Err(CqlError::already_exists(ks, &table.name));
                }
                k.tables.insert(
                    table.name.clone(),
                    Arc::new(Table {
                        schema: Arc::new(schema),
                        data: Mutex::new(BTreeMap::new()),
                    }),
                );
                s.version = util::uuid_v4();
                drop(s);
                Ok(self.changed("CREATED", "TABLE", ks, Some(&table.name)))
            }
            Statement::DropTable { table, if_exists } => {
                let ks = table.keyspace.as_deref().or(session_ks).ok_or_else(|| {
                    CqlError::invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename")
                })?;
                let mut s = self.write_schema();
                let removed = s
                    .keyspaces
                    .get_mut(ks)
                    .and_then(|k| k.tables.remove(&table.name));
                if removed.is_none() {
                    if *if_exists {
                        return Ok(Outcome::Void);
                    }
                    return Err(CqlError::invalid(format!(
                        "Table '{}.{}' doesn't exist",
                        ks, table.name
                    )));
                }
                s.version = util::uuid_v4();
                drop(s);
                Ok(self.changed("DROPPED", "TABLE", ks, Some(&table.name)))
            }
        }
    }

    fn changed(
        &self,
        change: &'static str,
        target: &'static str,
        ks: &str,
        name: Option<&str>,
    ) -> Outcome {
        let c = SchemaChange {
            change,
            target,
            keyspace: ks.to_string(),
            name: name.map(str::to_string),
        };
        let _ = self.events.send(Event::Schema(c.clone()));
        Outcome::SchemaChange(c)
    }

    fn create_keyspace(
        &self,
        name: &str,
        if_not_exists: bool,
        replication: &[(String, String)],
        durable_writes: bool,
    ) -> QResult<Outcome> {
        if system::is_system_keyspace(name) {
            return Err(CqlError::already_exists(name, ""));
        }
        let mut repl: Vec<(String, String)> = Vec::new();
        let mut class = None;
        for (k, v) in replication {
            if k == "class" {
                class = Some(if v.contains('.') {
                    v.clone()
                } else {
                    format!("org.apache.cassandra.locator.{v}")
                });
            } else {
                repl.push((k.clone(), v.clone()));
            }
        }
        let class =
            class.ok_or_else(|| CqlError::new(0x2300, "Missing mandatory option 'class'"))?;
        repl.push(("class".into(), class));
        repl.sort();
        let mut s = self.write_schema();
        if s.keyspaces.contains_key(name) {
            if if_not_exists {
                return Ok(Outcome::Void);
            }
            return Err(CqlError::already_exists(name, ""));
        }
        s.keyspaces.insert(
            name.to_string(),
            Keyspace {
                name: name.to_string(),
                replication: repl,
                durable_writes,
                tables: BTreeMap::new(),
            },
        );
        s.version = util::uuid_v4();
        drop(s);
        Ok(self.changed("CREATED", "KEYSPACE", name, None))
    }

    // ------------------------------------------------------------ reads

    fn select(
        &self,
        stmt: &Statement,
        session_ks: Option<&str>,
        ctx: &Ctx,
        opts: &ExecOptions,
    ) -> QResult<Outcome> {
        let Statement::Select {
            table,
            selectors,
            conds,
            limit,
        } = stmt
        else {
            return Err(CqlError::invalid("not a SELECT"));
        };
        let tref = self.resolve(table, session_ks)?;
        let s = tref.schema();
        let (cols, plan) = select_plan(&s, selectors.as_deref())?;
        // Evaluate the conditions once.
        let mut filters: Vec<(usize, Op, Vec<Vec<u8>>)> = Vec::new();
        for c in conds {
            let ci = s.col_or_err(&c.column)?;
            let col = &s.columns[ci];
            let vals = cond_values(c, col, ctx)?;
            filters.push((ci, c.op, vals));
        }
        let limit = match limit {
            Some(t) => {
                let v = eval(t, &ColType::Int, "[limit]", ctx)?;
                match v {
                    Cell::Val(b) if b.len() == 4 => {
                        let n = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        if n <= 0 {
                            return Err(CqlError::invalid("LIMIT must be strictly positive"));
                        }
                        Some(n as usize)
                    }
                    _ => return Err(CqlError::invalid("Invalid null value of limit")),
                }
            }
            None => None,
        };
        let all_rows: Vec<Cells> = match &tref {
            TableRef::System(sys) => system::rows(self, sys, opts.node),
            TableRef::User(t) => {
                let data = t.data.lock().unwrap_or_else(|e| e.into_inner());
                let pkeys = partition_keys(&s, &filters);
                let mut out = Vec::new();
                let mut push_partition = |p: &Partition| {
                    for r in p.rows.values() {
                        let mut cells = r.cells.clone();
                        for (i, c) in s.columns.iter().enumerate() {
                            if c.kind == Kind::Static {
                                cells[i] = p.statics.get(i).cloned().flatten();
                            }
                        }
                        out.push(cells);
                    }
                };
                match pkeys {
                    Some(keys) => {
                        for k in keys {
                            if let Some(p) = data.get(&k) {
                                push_partition(p);
                            }
                        }
                    }
                    None => data.values().for_each(&mut push_partition),
                }
                out
            }
        };
        let mut matched: Vec<Cells> = all_rows
            .into_iter()
            .filter(|r| {
                filters.iter().all(|(ci, op, vals)| {
                    matches(
                        &s.columns[*ci].ty,
                        r.get(*ci).and_then(|x| x.as_deref()),
                        *op,
                        vals,
                    )
                })
            })
            .collect();
        if let Some(n) = limit {
            matched.truncate(n);
        }
        let count_only = plan.iter().any(|p| matches!(p, Proj::Count));
        let projected: Vec<Cells> = if count_only {
            let n = matched.len() as i64;
            vec![plan
                .iter()
                .map(|p| match p {
                    Proj::Count => Some(n.to_be_bytes().to_vec()),
                    Proj::Col(i) => matched.first().and_then(|r| r[*i].clone()),
                    Proj::Now => Some(util::timeuuid_now().to_vec()),
                    Proj::Uuid => Some(util::uuid_v4().to_vec()),
                    Proj::Timestamp => Some(util::now_millis().to_be_bytes().to_vec()),
                })
                .collect()]
        } else {
            matched
                .iter()
                .map(|r| {
                    plan.iter()
                        .map(|p| match p {
                            Proj::Col(i) => r[*i].clone(),
                            Proj::Now => Some(util::timeuuid_now().to_vec()),
                            Proj::Uuid => Some(util::uuid_v4().to_vec()),
                            Proj::Timestamp => Some(util::now_millis().to_be_bytes().to_vec()),
                            Proj::Count => None,
                        })
                        .collect()
                })
                .collect()
        };
        // Paging: the state is the offset of the next row.
        let start = match &opts.paging_state {
            Some(ps) if !ps.is_empty() => {
                if ps.len() != 12 || &ps[..4] != PAGING_MAGIC {
                    return Err(CqlError::new(
                        ERR_PROTOCOL,
                        "Invalid value for the paging state",
                    ));
                }
                let mut a = [0u8; 8];
                a.copy_from_slice(&ps[4..]);
                u64::from_be_bytes(a) as usize
            }
            _ => 0,
        };
        let mut rows: Vec<Cells> = projected.into_iter().skip(start).collect();
        let mut paging_state = None;
        if let Some(ps) = opts.page_size.filter(|n| *n > 0) {
            let ps = ps as usize;
            if rows.len() > ps {
                rows.truncate(ps);
                let mut st = PAGING_MAGIC.to_vec();
                st.extend_from_slice(&((start + ps) as u64).to_be_bytes());
                paging_state = Some(st);
            }
        }
        Ok(Outcome::Rows(ResultSet {
            keyspace: s.keyspace.clone(),
            table: s.name.clone(),
            columns: cols,
            rows,
            paging_state,
        }))
    }

    // ------------------------------------------------------------ writes

    fn modify(&self, stmt: &Statement, session_ks: Option<&str>, ctx: &Ctx) -> QResult<Outcome> {
        let q = match stmt {
            Statement::Insert { table, .. }
            | Statement::Update { table, .. }
            | Statement::Delete { table, .. } => table,
            _ => {
                return Err(CqlError::invalid(
                    "Only INSERT, UPDATE and DELETE are allowed in a BATCH",
                ))
            }
        };
        let t = match self.resolve(q, session_ks)? {
            TableRef::User(t) => t,
            TableRef::System(s) => {
                return Err(CqlError::new(
                    0x2100,
                    format!("{} keyspace is not user-modifiable.", s.keyspace),
                ))
            }
        };
        let s = t.schema.clone();
        match stmt {
            Statement::Insert {
                columns,
                values,
                if_not_exists,
                ..
            } => {
                if columns.len() != values.len() {
                    return Err(CqlError::invalid("Unmatched column names/values"));
                }
                let mut cells: Vec<Option<Cell>> = (0..s.columns.len()).map(|_| None).collect();
                for (c, v) in columns.iter().zip(values) {
                    let ci = s.col_or_err(c)?;
                    if cells[ci].is_some() {
                        return Err(CqlError::invalid(format!(
                            "Multiple definitions found for column {c}"
                        )));
                    }
                    cells[ci] = Some(eval(v, &s.columns[ci].ty, c, ctx)?);
                }
                let mut key_parts = |idx: &[usize], what: &str| -> QResult<Vec<Vec<u8>>> {
                    let missing: Vec<&str> = idx
                        .iter()
                        .filter(|i| cells[**i].is_none())
                        .map(|i| s.columns[*i].name.as_str())
                        .collect();
                    if !missing.is_empty() {
                        return Err(CqlError::invalid(format!(
                            "Some {what} are missing: {}",
                            missing.join(", ")
                        )));
                    }
                    idx.iter()
                        .map(|i| match cells[*i].take() {
                            Some(Cell::Val(v)) => Ok(v),
                            Some(Cell::Unset) => Err(CqlError::invalid(format!(
                                "Invalid unset value for column {}",
                                s.columns[*i].name
                            ))),
                            _ => Err(CqlError::invalid(format!(
                                "Invalid null value in condition for column {}",
                                s.columns[*i].name
                            ))),
                        })
                        .collect()
                };
                let pkv = key_parts(&s.pk, "partition key parts")?;
                let ckv = key_parts(&s.ck, "clustering keys")?;
                let pk = order_key(&s, &s.pk, &pkv);
                let ck = order_key(&s, &s.ck, &ckv);
                let mut data = t.data.lock().unwrap_or_else(|e| e.into_inner());
                if *if_not_exists {
                    if let Some(existing) = data.get(&pk).and_then(|p| p.rows.get(&ck)) {
                        let mut row = vec![Some(vec![0u8])];
                        row.extend(existing.cells.iter().cloned());
                        return Ok(applied(&s, row));
                    }
                }
                let part = data.entry(pk).or_insert_with(|| Partition {
                    statics: vec![None; s.columns.len()],
                    rows: BTreeMap::new(),
                });
                let row = part.rows.entry(ck).or_insert_with(|| Row {
                    cells: vec![None; s.columns.len()],
                    marker: false,
                });
                row.marker = true;
                for (i, v) in s.pk.iter().zip(pkv) {
                    row.cells[*i] = Some(v);
                }
                for (i, v) in s.ck.iter().zip(ckv) {
                    row.cells[*i] = Some(v);
                }
                for (i, c) in cells.into_iter().enumerate() {
                    let target = if s.columns[i].kind == Kind::Static {
                        &mut part.statics[i]
                    } else {
                        &mut row.cells[i]
                    };
                    match c {
                        Some(Cell::Val(v)) => *target = Some(v),
                        Some(Cell::Null) => *target = None,
                        _ => {}
                    }
                }
                if *if_not_exists {
                    return Ok(applied(&s, vec![Some(vec![1u8])]));
                }
                Ok(Outcome::Void)
            }
            Statement::Update {
                sets,
                conds,
                if_exists,
                ..
            } => {
                let targets = key_targets(&s, conds, ctx, true)?;
                // Evaluate assignments before taking the lock.
                let mut ops = Vec::new();
                for (c, op) in sets {
                    let ci = s.col_or_err(c)?;
                    let col = &s.columns[ci];
                    if col.kind == Kind::PartitionKey || col.kind == Kind::Clustering {
                        return Err(CqlError::invalid(format!(
                            "PRIMARY KEY part {c} found in SET part"
                        )));
                    }
                    ops.push((ci, eval_setop(op, col, ctx)?));
                }
                let mut data = t.data.lock().unwrap_or_else(|e| e.into_inner());
                if *if_exists {
                    let exists = targets.iter().all(|(pk, _, ck, _)| {
                        data.get(pk).is_some_and(|p| p.rows.contains_key(ck))
                    });
                    if !exists {
                        return Ok(applied(&s, vec![Some(vec![0u8])]));
                    }
                }
                for (pk, pkv, ck, ckv) in targets {
                    let part = data.entry(pk).or_insert_with(|| Partition {
                        statics: vec![None; s.columns.len()],
                        rows: BTreeMap::new(),
                    });
                    let row = part.rows.entry(ck.clone()).or_insert_with(|| Row {
                        cells: vec![None; s.columns.len()],
                        marker: false,
                    });
                    for (i, v) in s.pk.iter().zip(&pkv) {
                        row.cells[*i] = Some(v.clone());
                    }
                    for (i, v) in s.ck.iter().zip(&ckv) {
                        row.cells[*i] = Some(v.clone());
                    }
                    for (ci, op) in &ops {
                        let col = &s.columns[*ci];
                        let target = if col.kind == Kind::Static {
                            &mut part.statics[*ci]
                        } else {
                            &mut row.cells[*ci]
                        };
                        apply_setop(&col.ty, target, op)?;
                    }
                    let empty = !row.marker
                        && row.cells.iter().enumerate().all(|(i, c)| {
                            c.is_none()
                                || matches!(
                                    s.columns[i].kind,
                                    Kind::PartitionKey | Kind::Clustering
                                )
                        });
                    if empty {
                        part.rows.remove(&ck);
                    }
                }
                if *if_exists {
                    return Ok(applied(&s, vec![Some(vec![1u8])]));
                }
                Ok(Outcome::Void)
            }
            Statement::Delete {
                columns,
                conds,
                if_exists,
                ..
            } => {
                let col_idx: Vec<usize> = columns
                    .iter()
                    .map(|c| s.col_or_err(c))
                    .collect::<QResult<_>>()?;
                // Partition key by equality; clustering columns may be a prefix or a range.
                let mut pk_conds = Vec::new();
                let mut other = Vec::new();
                for c in conds {
                    let ci = s.col_or_err(&c.column)?;
                    match s.columns[ci].kind {
                        Kind::PartitionKey => pk_conds.push(c.clone()),
                        Kind::Clustering => {
                            other.push((ci, c.op, cond_values(c, &s.columns[ci], ctx)?))
                        }
                        _ => {
                            return Err(CqlError::invalid(format!(
                                "Non PRIMARY KEY columns found in where clause: {}",
                                c.column
                            )))
                        }
                    }
                }
                let targets = key_targets(&s, &pk_conds, ctx, false)?;
                let mut data = t.data.lock().unwrap_or_else(|e| e.into_inner());
                let mut any = false;
                for (pk, _, _, _) in targets {
                    let Some(part) = data.get_mut(&pk) else {
                        continue;
                    };
                    let keys: Vec<Vec<u8>> = part
                        .rows
                        .iter()
                        .filter(|(_, r)| {
                            other.iter().all(|(ci, op, vals)| {
                                matches(&s.columns[*ci].ty, r.cells[*ci].as_deref(), *op, vals)
                            })
                        })
                        .map(|(k, _)| k.clone())
                        .collect();
                    any |= !keys.is_empty();
                    if *if_exists && keys.is_empty() {
                        continue;
                    }
                    for k in keys {
                        if col_idx.is_empty() {
                            part.rows.remove(&k);
                        } else if let Some(r) = part.rows.get_mut(&k) {
                            for ci in &col_idx {
                                r.cells[*ci] = None;
                            }
                        }
                    }
                    if col_idx.is_empty() && other.is_empty() {
                        data.remove(&pk);
                    }
                }
                if *if_exists {
                    return Ok(applied(&s, vec![Some(vec![any as u8])]));
                }
                Ok(Outcome::Void)
            }
            _ => Ok(Outcome::Void),
        }
    }
}

// -------------------------------------------------------------------- helpers

struct Ctx<'a> {
    values: &'a [BoundValue],
}

type Plan = (Vec<(String, ColType)>, Vec<Proj>);

#[derive(Debug, Clone)]
enum Proj {
    Col(usize),
    Count,
    Now,
    Uuid,
    Timestamp,
}

fn select_plan(s: &TableSchema, selectors: Option<&[Selector]>) -> QResult<Plan> {
    let Some(sel) = selectors else {
        return Ok((
            s.columns
                .iter()
                .map(|c| (c.name.clone(), c.ty.clone()))
                .collect(),
            (0..s.columns.len()).map(Proj::Col).collect(),
        ));
    };
    let mut cols = Vec::new();
    let mut plan = Vec::new();
    for x in sel {
        match x {
            Selector::Column(n, alias) => {
                let ci = s.col_or_err(n)?;
                cols.push((
                    alias.clone().unwrap_or_else(|| n.clone()),
                    s.columns[ci].ty.clone(),
                ));
                plan.push(Proj::Col(ci));
            }
            Selector::CountStar(alias) => {
                cols.push((
                    alias.clone().unwrap_or_else(|| "count".into()),
                    ColType::BigInt,
                ));
                plan.push(Proj::Count);
            }
            Selector::Func(name, args, alias) => {
                let (p, ty) = match (name.as_str(), args.as_slice()) {
                    ("now", []) | ("currenttimeuuid", []) => (Proj::Now, ColType::TimeUuid),
                    ("uuid", []) => (Proj::Uuid, ColType::Uuid),
                    ("currenttimestamp", []) => (Proj::Timestamp, ColType::Timestamp),
                    ("totimestamp", [Term::Func(f, a)]) if f == "now" && a.is_empty() => {
                        (Proj::Timestamp, ColType::Timestamp)
                    }
                    _ => {
                        return Err(CqlError::invalid(format!(
                            "Unknown function '{name}' or unsupported by cql-devserver"
                        )))
                    }
                };
                let label = alias.clone().unwrap_or_else(|| format!("system.{name}()"));
                cols.push((label, ty));
                plan.push(p);
            }
        }
    }
    Ok((cols, plan))
}

fn applied_cols(s: &TableSchema) -> Vec<(String, ColType)> {
    let mut v = vec![("[applied]".to_string(), ColType::Boolean)];
    v.extend(s.columns.iter().map(|c| (c.name.clone(), c.ty.clone())));
    v
}

fn applied(s: &TableSchema, row: Cells) -> Outcome {
    let columns = if row.len() == 1 {
        vec![("[applied]".to_string(), ColType::Boolean)]
    } else {
        applied_cols(s)
    };
    Outcome::Rows(ResultSet {
        keyspace: s.keyspace.clone(),
        table: s.name.clone(),
        columns,
        rows: vec![row],
        paging_state: None,
    })
}

pub fn metadata_id(cols: Option<&[(String, ColType)]>) -> [u8; 16] {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for (n, t) in cols.unwrap_or(&[]) {
        parts.push(format!("{n}:{};", t.cql_name()).into_bytes());
    }
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    util::md5(&refs)
}

/// The value of each partition key column of `s` given by `stmt` (an INSERT's column, or
/// a WHERE equality with one term), serialized, in partition key order; None unless all are.
fn routing_key(s: &TableSchema, stmt: &Statement, ctx: &Ctx) -> Option<Vec<Vec<u8>>> {
    s.pk.iter()
        .map(|&pki| {
            let col = s.columns.get(pki)?;
            let term = match stmt {
                Statement::Insert {
                    columns, values, ..
                } => columns
                    .iter()
                    .zip(values)
                    .find(|(c, _)| s.col(c) == Some(pki))
                    .map(|(_, t)| t)?,
                Statement::Select { conds, .. }
                | Statement::Update { conds, .. }
                | Statement::Delete { conds, .. } => conds
                    .iter()
                    .filter(|c| s.col(&c.column) == Some(pki) && matches!(c.op, Op::Eq))
                    .find_map(|c| match &c.rhs {
                        Rhs::One(t) => Some(t),
                        Rhs::List(_) => None,
                    })?,
                _ => return None,
            };
            match eval(term, &col.ty, &col.name, ctx) {
                Ok(Cell::Val(v)) => Some(v),
                _ => None,
            }
        })
        .collect()
}

fn prepared_table(s: &Statement) -> Option<&QName> {
    match s {
        Statement::Select { table, .. }
        | Statement::Insert { table, .. }
        | Statement::Update { table, .. }
        | Statement::Delete { table, .. } => Some(table),
        _ => None,
    }
}

fn set_bind(
    binds: &mut [Option<(String, String, String, ColType)>],
    i: usize,
    s: &TableSchema,
    name: &str,
    ty: ColType,
) {
    if let Some(slot) = binds.get_mut(i) {
        *slot = Some((s.keyspace.clone(), s.name.clone(), name.to_string(), ty));
    }
}

fn bind_term(
    s: &TableSchema,
    t: &Term,
    name: &str,
    ty: &ColType,
    binds: &mut [Option<(String, String, String, ColType)>],
) {
    match t {
        Term::Bind(i) => set_bind(binds, *i, s, name, ty.clone()),
        Term::Set(items) | Term::List(items) => {
            let (_, et) = element_types(ty);
            for it in items {
                bind_term(s, it, name, &et, binds);
            }
        }
        Term::Map(items) => {
            let (kt, vt) = element_types(ty);
            for (k, v) in items {
                bind_term(s, k, name, &kt, binds);
                bind_term(s, v, name, &vt, binds);
            }
        }
        _ => {}
    }
}

fn bind_conds(
    s: &TableSchema,
    conds: &[Cond],
    binds: &mut [Option<(String, String, String, ColType)>],
) -> QResult<()> {
    for c in conds {
        let ci = s.col_or_err(&c.column)?;
        let col = &s.columns[ci];
        match (&c.rhs, c.op) {
            (Rhs::One(Term::Bind(i)), Op::In) => set_bind(
                binds,
                *i,
                s,
                &format!("in({})", col.name),
                ColType::List(Box::new(col.ty.clone())),
            ),
            (Rhs::One(t), Op::Contains) => {
                bind_term(s, t, &col.name, &element_types(&col.ty).1, binds)
            }
            (Rhs::One(t), Op::ContainsKey) => {
                bind_term(s, t, &col.name, &element_types(&col.ty).0, binds)
            }
            (Rhs::One(t), _) => bind_term(s, t, &col.name, &col.ty, binds),
            (Rhs::List(items), _) => {
                for t in items {
                    bind_term(s, t, &col.name, &col.ty, binds);
                }
            }
        }
    }
    Ok(())
}

/// (key type, element/value type) of a collection; lists are indexed by int.
fn element_types(ty: &ColType) -> (ColType, ColType) {
    match ty {
        ColType::List(e) => (ColType::Int, (**e).clone()),
        ColType::Set(e) => ((**e).clone(), (**e).clone()),
        ColType::Map(k, v) => ((**k).clone(), (**v).clone()),
        t => (t.clone(), t.clone()),
    }
}

/// Puts named values in marker order.
fn arrange_values(parsed: &cql::Parsed, opts: &ExecOptions) -> QResult<Vec<BoundValue>> {
    let values = match &opts.names {
        None => opts.values.clone(),
        Some(names) => {
            let mut out = vec![BoundValue::Unset; parsed.markers];
            for (i, m) in parsed.marker_names.iter().enumerate() {
                let Some(m) = m else {
                    return Err(CqlError::invalid(
                        "Named values are only supported with named bind markers",
                    ));
                };
                if let Some(p) = names.iter().position(|n| n.eq_ignore_ascii_case(m)) {
                    out[i] = opts.values.get(p).cloned().unwrap_or(BoundValue::Unset);
                } else {
                    return Err(CqlError::invalid(format!("No value for bind marker {m}")));
                }
            }
            out
        }
    };
    if values.len() != parsed.markers {
        return Err(CqlError::invalid(format!(
            "There were {} markers(?) in CQL but {} bound variables",
            parsed.markers,
            values.len()
        )));
    }
    Ok(values)
}

fn lit_err(kind: &str, text: &str, col: &str, ty: &ColType) -> CqlError {
    CqlError::invalid(format!(
        "Invalid {kind} constant ({text}) for \"{col}\" of type {}",
        ty.cql_name()
    ))
}

fn eval(t: &Term, ty: &ColType, col: &str, ctx: &Ctx) -> QResult<Cell> {
    Ok(match t {
        Term::Null => Cell::Null,
        Term::Bind(i) => match ctx.values.get(*i) {
            Some(BoundValue::Bytes(b)) => Cell::Val(ty.validate(b).map_err(CqlError::invalid)?),
            Some(BoundValue::Null) => Cell::Null,
            Some(BoundValue::Unset) | None => Cell::Unset,
        },
        Term::Str(s) => Cell::Val(match ty {
            ColType::Varchar => s.as_bytes().to_vec(),
            ColType::Ascii if s.is_ascii() => s.as_bytes().to_vec(),
            ColType::Timestamp => parse_timestamp(s)
                .ok_or_else(|| {
                    CqlError::invalid(format!("Unable to coerce '{s}' to a formatted date (long)"))
                })?
                .to_be_bytes()
                .to_vec(),
            ColType::Inet => match s.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(a)) => a.octets().to_vec(),
                Ok(std::net::IpAddr::V6(a)) => a.octets().to_vec(),
                Err(_) => {
                    return Err(CqlError::invalid(format!(
                        "Unable to make inet address from '{s}'"
                    )))
                }
            },
            ColType::Uuid | ColType::TimeUuid => crate::types::parse_uuid(s)
                .ok_or_else(|| lit_err("STRING", s, col, ty))?
                .to_vec(),
            _ => return Err(lit_err("STRING", s, col, ty)),
        }),
        Term::Int(s) => Cell::Val(match ty {
            ColType::Int => s
                .parse::<i32>()
                .map_err(|_| lit_err("INTEGER", s, col, ty))?
                .to_be_bytes()
                .to_vec(),
            ColType::BigInt | ColType::Counter | ColType::Timestamp => s
                .parse::<i64>()
                .map_err(|_| lit_err("INTEGER", s, col, ty))?
                .to_be_bytes()
                .to_vec(),
            ColType::SmallInt => s
                .parse::<i16>()
                .map_err(|_| lit_err("INTEGER", s, col, ty))?
                .to_be_bytes()
                .to_vec(),
            ColType::TinyInt => s
                .parse::<i8>()
                .map_err(|_| lit_err("INTEGER", s, col, ty))?
                .to_be_bytes()
                .to_vec(),
            ColType::Double => s
                .parse::<f64>()
                .map_err(|_| lit_err("INTEGER", s, col, ty))?
                .to_be_bytes()
                .to_vec(),
            ColType::Float => s
                .parse::<f32>()
                .map_err(|_| lit_err("INTEGER", s, col, ty))?
                .to_be_bytes()
                .to_vec(),
            ColType::Varint => {
                let v = s
                    .parse::<i64>()
                    .map_err(|_| lit_err("INTEGER", s, col, ty))?;
                let b = v.to_be_bytes();
                let mut start = 0;
                while start < 7
                    && ((b[start] == 0 && b[start + 1] & 0x80 == 0)
                        || (b[start] == 0xff && b[start + 1] & 0x80 != 0))
                {
                    start += 1;
                }
                b[start..].to_vec()
            }
            _ => return Err(lit_err("INTEGER", s, col, ty)),
        }),
        Term::Float(s) => Cell::Val(match ty {
            ColType::Double => s
                .parse::<f64>()
                .map_err(|_| lit_err("FLOAT", s, col, ty))?
                .to_be_bytes()
                .to_vec(),
            ColType::Float => s
                .parse::<f32>()
                .map_err(|_| lit_err("FLOAT", s, col, ty))?
                .to_be_bytes()
                .to_vec(),
            _ => return Err(lit_err("FLOAT", s, col, ty)),
        }),
        Term::Bool(b) => match ty {
            ColType::Boolean => Cell::Val(vec![*b as u8]),
            _ => return Err(lit_err("BOOLEAN", &b.to_string(), col, ty)),
        },
        Term::Uuid(u) => match ty {
            ColType::Uuid | ColType::TimeUuid => Cell::Val(u.to_vec()),
            _ => return Err(lit_err("UUID", &crate::types::format_uuid(u), col, ty)),
        },
        Term::Blob(b) => match ty {
            ColType::Blob => Cell::Val(b.clone()),
            _ => return Err(lit_err("HEX", &format!("0x{}", util::hex(b)), col, ty)),
        },
        Term::Set(items) | Term::List(items) => {
            let et = match (ty, t) {
                (ColType::Set(e), Term::Set(_)) | (ColType::List(e), Term::List(_)) => e,
                _ => {
                    return Err(CqlError::invalid(format!(
                        "Invalid collection literal for {col} of type {}",
                        ty.cql_name()
                    )))
                }
            };
            let mut vals = Vec::new();
            for it in items {
                match eval(it, et, col, ctx)? {
                    Cell::Val(v) => vals.push(vec![v]),
                    _ => {
                        return Err(CqlError::invalid(
                            "null is not supported inside collections",
                        ))
                    }
                }
            }
            Cell::Val(
                ty.validate(&encode_collection(&vals))
                    .map_err(CqlError::invalid)?,
            )
        }
        Term::Map(items) => {
            if items.is_empty() && matches!(ty, ColType::Set(_) | ColType::List(_)) {
                return Ok(Cell::Val(encode_collection(&[])));
            }
            let ColType::Map(kt, vt) = ty else {
                return Err(CqlError::invalid(format!(
                    "Invalid map literal for {col} of type {}",
                    ty.cql_name()
                )));
            };
            let mut vals = Vec::new();
            for (k, v) in items {
                match (eval(k, kt, col, ctx)?, eval(v, vt, col, ctx)?) {
                    (Cell::Val(k), Cell::Val(v)) => vals.push(vec![k, v]),
                    _ => {
                        return Err(CqlError::invalid(
                            "null is not supported inside collections",
                        ))
                    }
                }
            }
            Cell::Val(
                ty.validate(&encode_collection(&vals))
                    .map_err(CqlError::invalid)?,
            )
        }
        Term::Func(name, args) => match (name.as_str(), args.as_slice(), ty) {
            ("now" | "currenttimeuuid", [], ColType::TimeUuid | ColType::Uuid) => {
                Cell::Val(util::timeuuid_now().to_vec())
            }
            ("uuid", [], ColType::Uuid) => Cell::Val(util::uuid_v4().to_vec()),
            ("currenttimestamp", [], ColType::Timestamp) => {
                Cell::Val(util::now_millis().to_be_bytes().to_vec())
            }
            ("totimestamp", [Term::Func(f, a)], ColType::Timestamp)
                if f == "now" && a.is_empty() =>
            {
                Cell::Val(util::now_millis().to_be_bytes().to_vec())
            }
            ("textasblob", [Term::Str(s)], ColType::Blob) => Cell::Val(s.as_bytes().to_vec()),
            _ => {
                return Err(CqlError::invalid(format!(
                    "Unknown function {name} called, or wrong type for {col}"
                )))
            }
        },
    })
}

fn cond_values(c: &Cond, col: &Column, ctx: &Ctx) -> QResult<Vec<Vec<u8>>> {
    let ty = match c.op {
        Op::Contains => element_types(&col.ty).1,
        Op::ContainsKey => element_types(&col.ty).0,
        _ => col.ty.clone(),
    };
    let terms: Vec<Cell> = match (&c.rhs, c.op) {
        (Rhs::List(items), _) => items
            .iter()
            .map(|t| eval(t, &ty, &col.name, ctx))
            .collect::<QResult<_>>()?,
        (Rhs::One(t), Op::In) => {
            match eval(t, &ColType::List(Box::new(ty.clone())), &col.name, ctx)? {
                Cell::Val(b) => decode_collection(&b, 1)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|mut i| Cell::Val(i.remove(0)))
                    .collect(),
                _ => Vec::new(),
            }
        }
        (Rhs::One(t), _) => vec![eval(t, &ty, &col.name, ctx)?],
    };
    let mut out = Vec::new();
    for t in terms {
        match t {
            Cell::Val(v) => out.push(v),
            Cell::Null => {
                return Err(CqlError::invalid(format!(
                    "Invalid null value in condition for column {}",
                    col.name
                )))
            }
            Cell::Unset => {
                return Err(CqlError::invalid(format!(
                    "Invalid unset value for column {}",
                    col.name
                )))
            }
        }
    }
    Ok(out)
}

fn matches(ty: &ColType, v: Option<&[u8]>, op: Op, vals: &[Vec<u8>]) -> bool {
    use std::cmp::Ordering::*;
    let Some(v) = v else { return false };
    match op {
        Op::Eq => vals.first().is_some_and(|x| ty.compare(v, x) == Equal),
        Op::Ne => vals.first().is_some_and(|x| ty.compare(v, x) != Equal),
        Op::In => vals.iter().any(|x| ty.compare(v, x) == Equal),
        Op::Lt => vals.first().is_some_and(|x| ty.compare(v, x) == Less),
        Op::Le => vals.first().is_some_and(|x| ty.compare(v, x) != Greater),
        Op::Gt => vals.first().is_some_and(|x| ty.compare(v, x) == Greater),
        Op::Ge => vals.first().is_some_and(|x| ty.compare(v, x) != Less),
        Op::Contains | Op::ContainsKey => {
            let (kt, et) = element_types(ty);
            let arity = if matches!(ty, ColType::Map(..)) { 2 } else { 1 };
            let Some(items) = decode_collection(v, arity) else {
                return false;
            };
            let Some(x) = vals.first() else { return false };
            items.iter().any(|it| {
                if op == Op::ContainsKey || arity == 1 {
                    kt.compare(&it[0], x) == Equal
                } else {
                    et.compare(&it[1], x) == Equal
                }
            })
        }
    }
}

/// The partition keys selected by equality/IN on every partition key column, if so.
fn partition_keys(s: &TableSchema, filters: &[(usize, Op, Vec<Vec<u8>>)]) -> Option<Vec<Vec<u8>>> {
    let mut per_col: Vec<Vec<Vec<u8>>> = Vec::new();
    for &pki in &s.pk {
        let f = filters
            .iter()
            .find(|(ci, op, _)| *ci == pki && matches!(op, Op::Eq | Op::In))?;
        per_col.push(f.2.clone());
    }
    let mut combos: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    for vals in per_col {
        let mut next = Vec::new();
        for c in &combos {
            for v in &vals {
                let mut c2 = c.clone();
                c2.push(v.clone());
                next.push(c2);
            }
        }
        combos = next;
    }
    let mut keys: Vec<Vec<u8>> = combos.iter().map(|c| order_key(s, &s.pk, c)).collect();
    keys.sort();
    keys.dedup();
    Some(keys)
}

type Target = (Vec<u8>, Vec<Vec<u8>>, Vec<u8>, Vec<Vec<u8>>);

/// Rows addressed by a WHERE clause of UPDATE (full primary key) or DELETE (partition key).
fn key_targets(s: &TableSchema, conds: &[Cond], ctx: &Ctx, need_ck: bool) -> QResult<Vec<Target>> {
    let mut vals: HashMap<usize, Vec<Vec<u8>>> = HashMap::new();
    for c in conds {
        let ci = s.col_or_err(&c.column)?;
        let col = &s.columns[ci];
        if !matches!(col.kind, Kind::PartitionKey | Kind::Clustering) {
            return Err(CqlError::invalid(format!(
                "Non PRIMARY KEY columns found in where clause: {}",
                col.name
            )));
        }
        if !matches!(c.op, Op::Eq | Op::In) {
            return Err(CqlError::invalid(format!(
                "Invalid operator {:?} for PRIMARY KEY part {}",
                c.op, col.name
            )));
        }
        vals.insert(ci, cond_values(c, col, ctx)?);
    }
    let missing: Vec<&str> =
        s.pk.iter()
            .filter(|i| !vals.contains_key(i))
            .map(|i| s.columns[*i].name.as_str())
            .collect();
    if !missing.is_empty() {
        return Err(CqlError::invalid(format!(
            "Some partition key parts are missing: {}",
            missing.join(", ")
        )));
    }
    if need_ck {
        let missing: Vec<&str> =
            s.ck.iter()
                .filter(|i| !vals.contains_key(i))
                .map(|i| s.columns[*i].name.as_str())
                .collect();
        if !missing.is_empty() {
            return Err(CqlError::invalid(format!(
                "Some clustering keys are missing: {}",
                missing.join(", ")
            )));
        }
    }
    let key_cols: Vec<usize> = if need_ck {
        s.pk.iter().chain(&s.ck).copied().collect()
    } else {
        s.pk.clone()
    };
    let mut combos: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    for ci in &key_cols {
        let mut next = Vec::new();
        for c in &combos {
            for v in &vals[ci] {
                let mut c2 = c.clone();
                c2.push(v.clone());
                next.push(c2);
            }
        }
        combos = next;
    }
    Ok(combos
        .into_iter()
        .map(|c| {
            let (p, k) = c.split_at(s.pk.len());
            (
                order_key(s, &s.pk, p),
                p.to_vec(),
                order_key(s, &s.ck, k),
                k.to_vec(),
            )
        })
        .collect())
}

enum EvalOp {
    Assign(Cell),
    Add(Vec<u8>),
    Remove(Vec<u8>),
    Prepend(Vec<u8>),
    Element(Vec<u8>, Cell),
}

fn eval_setop(op: &SetOp, col: &Column, ctx: &Ctx) -> QResult<EvalOp> {
    let need = |c: Cell| -> QResult<Vec<u8>> {
        match c {
            Cell::Val(v) => Ok(v),
            _ => Err(CqlError::invalid(format!(
                "Invalid null value for collection operation on {}",
                col.name
            ))),
        }
    };
    Ok(match op {
        SetOp::Assign(t) => EvalOp::Assign(eval(t, &col.ty, &col.name, ctx)?),
        SetOp::Add(t) => {
            if !col.ty.is_collection() {
                return Err(CqlError::invalid(format!(
                    "Invalid operation ({} = {} + ?) for non counter column {}",
                    col.name, col.name, col.name
                )));
            }
            EvalOp::Add(need(eval(t, &col.ty, &col.name, ctx)?)?)
        }
        SetOp::Prepend(t) => EvalOp::Prepend(need(eval(t, &col.ty, &col.name, ctx)?)?),
        SetOp::Remove(t) => {
            let ty = match &col.ty {
                ColType::Map(k, _) => ColType::Set(k.clone()),
                t => t.clone(),
            };
            EvalOp::Remove(need(eval(t, &ty, &col.name, ctx)?)?)
        }
        SetOp::Element(k, v) => {
            let (kt, vt) = element_types(&col.ty);
            EvalOp::Element(
                need(eval(k, &kt, &col.name, ctx)?)?,
                eval(v, &vt, &col.name, ctx)?,
            )
        }
    })
}

fn apply_setop(ty: &ColType, target: &mut Option<Vec<u8>>, op: &EvalOp) -> QResult<()> {
    let arity = if matches!(ty, ColType::Map(..)) { 2 } else { 1 };
    let current = || -> Vec<Vec<Vec<u8>>> {
        target
            .as_deref()
            .and_then(|b| decode_collection(b, arity))
            .unwrap_or_default()
    };
    let store = |items: Vec<Vec<Vec<u8>>>| -> QResult<Option<Vec<u8>>> {
        if items.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            ty.validate(&encode_collection(&items))
                .map_err(CqlError::invalid)?,
        ))
    };
    let new = match op {
        EvalOp::Assign(Cell::Val(v)) => {
            if ty.is_collection() && decode_collection(v, arity).is_some_and(|i| i.is_empty()) {
                None
            } else {
                Some(v.clone())
            }
        }
        EvalOp::Assign(Cell::Null) => None,
        EvalOp::Assign(Cell::Unset) => return Ok(()),
        EvalOp::Add(v) => {
            let mut items = current();
            if let ColType::Map(..) = ty {
                // map + map: later keys win (validate dedups keeping the first)
                let add = decode_collection(v, 2).unwrap_or_default();
                items.retain(|i| !add.iter().any(|a| a[0] == i[0]));
                let mut merged = add;
                merged.extend(items);
                items = merged;
            } else {
                items.extend(decode_collection(v, 1).unwrap_or_default());
            }
            store(items)?
        }
        EvalOp::Prepend(v) => {
            let mut items = decode_collection(v, arity).unwrap_or_default();
            items.extend(current());
            store(items)?
        }
        EvalOp::Remove(v) => {
            let rm = decode_collection(v, 1).unwrap_or_default();
            let mut items = current();
            items.retain(|i| !rm.iter().any(|r| r[0] == i[0]));
            store(items)?
        }
        EvalOp::Element(k, v) => {
            let mut items = current();
            match ty {
                ColType::List(_) => {
                    let idx = if k.len() == 4 {
                        i32::from_be_bytes([k[0], k[1], k[2], k[3]])
                    } else {
                        -1
                    };
                    if idx < 0 || idx as usize >= items.len() {
                        return Err(CqlError::invalid(format!(
                            "List index {idx} out of bound, list has size {}",
                            items.len()
                        )));
                    }
                    match v {
                        Cell::Val(v) => items[idx as usize] = vec![v.clone()],
                        Cell::Null => {
                            items.remove(idx as usize);
                        }
                        Cell::Unset => return Ok(()),
                    }
                }
                ColType::Map(..) => {
                    items.retain(|i| &i[0] != k);
                    match v {
                        Cell::Val(v) => items.push(vec![k.clone(), v.clone()]),
                        Cell::Null => {}
                        Cell::Unset => return Ok(()),
                    }
                }
                _ => {
                    return Err(CqlError::invalid(
                        "Invalid operation for non list/map column",
                    ))
                }
            }
            store(items)?
        }
    };
    *target = new;
    Ok(())
}

/// An order-preserving byte encoding of key components (memcmp order = CQL order).
fn order_key(s: &TableSchema, idx: &[usize], vals: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ci, v) in idx.iter().zip(vals) {
        let col = &s.columns[*ci];
        let mut part = Vec::new();
        if v.is_empty() {
            part.push(0);
        } else {
            part.push(1);
            match &col.ty {
                ColType::Int
                | ColType::BigInt
                | ColType::Timestamp
                | ColType::Counter
                | ColType::SmallInt
                | ColType::TinyInt => {
                    let mut x: i64 = if v[0] & 0x80 != 0 { -1 } else { 0 };
                    for b in v.iter().take(8) {
                        x = (x << 8) | *b as i64;
                    }
                    part.extend_from_slice(&((x as u64) ^ (1 << 63)).to_be_bytes());
                }
                ColType::Double | ColType::Float => {
                    let f = if v.len() == 8 {
                        f64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]))
                    } else if v.len() == 4 {
                        f32::from_be_bytes(v[..4].try_into().unwrap_or([0; 4])) as f64
                    } else {
                        0.0
                    };
                    let bits = f.to_bits();
                    let k = if bits >> 63 == 1 {
                        !bits
                    } else {
                        bits ^ (1 << 63)
                    };
                    part.extend_from_slice(&k.to_be_bytes());
                }
                ColType::TimeUuid if v.len() == 16 => {
                    part.extend_from_slice(&[
                        v[6] & 0x0f,
                        v[7],
                        v[4],
                        v[5],
                        v[0],
                        v[1],
                        v[2],
                        v[3],
                    ]);
                    part.extend_from_slice(v);
                }
                _ => {
                    for b in v {
                        part.push(*b);
                        if *b == 0 {
                            part.push(0xff);
                        }
                    }
                    part.extend_from_slice(&[0, 0]);
                }
            }
        }
        if col.desc {
            part.iter_mut().for_each(|b| *b = !*b);
        }
        out.extend_from_slice(&part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Db {
        Db::new(vec![system::NodeInfo::for_tests()])
    }

    fn run(db: &Db, ks: Option<&str>, q: &str) -> QResult<Outcome> {
        db.execute_text(q, ks, &ExecOptions::default())
    }

    fn rows(o: Outcome) -> Vec<Cells> {
        match o {
            Outcome::Rows(r) => r.rows,
            o => panic!("not rows: {o:?}"),
        }
    }

    #[test]
    fn crud_and_clustering() {
        let d = db();
        run(&d, None, "CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").unwrap();
        run(&d, Some("k"), "CREATE TABLE t (p int, c int, v text, s set<text>, PRIMARY KEY (p, c)) WITH CLUSTERING ORDER BY (c DESC)").unwrap();
        for c in [1, 3, 2, -5] {
            run(
                &d,
                Some("k"),
                &format!("INSERT INTO t (p, c, v) VALUES (1, {c}, 'x{c}')"),
            )
            .unwrap();
        }
        let r = rows(run(&d, Some("k"), "SELECT c FROM t WHERE p = 1 AND c >= 1").unwrap());
        let cs: Vec<i32> = r
            .iter()
            .map(|r| i32::from_be_bytes(r[0].clone().unwrap().try_into().unwrap()))
            .collect();
        assert_eq!(cs, vec![3, 2, 1]);
        run(
            &d,
            Some("k"),
            "UPDATE t SET s = s + {'b', 'a'} WHERE p = 1 AND c = 3",
        )
        .unwrap();
        run(&d, Some("k"), "DELETE FROM t WHERE p = 1 AND c = 2").unwrap();
        let r = rows(run(&d, Some("k"), "SELECT count(*) FROM t").unwrap());
        assert_eq!(r[0][0], Some(3i64.to_be_bytes().to_vec()));
        let e = run(&d, Some("k"), "SELECT * FROM nope").unwrap_err();
        assert_eq!(e.message, "table nope does not exist");
        let e = run(
            &d,
            None,
            "CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy'}",
        )
        .unwrap_err();
        assert_eq!(e.code, ERR_ALREADY_EXISTS);
        let lwt = rows(
            run(
                &d,
                Some("k"),
                "INSERT INTO t (p, c) VALUES (1, 1) IF NOT EXISTS",
            )
            .unwrap(),
        );
        assert_eq!(lwt[0][0], Some(vec![0]));
    }

    #[test]
    fn paging_state_offsets() {
        let d = db();
        run(&d, None, "CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").unwrap();
        run(&d, Some("k"), "CREATE TABLE t (p int PRIMARY KEY)").unwrap();
        for p in 0..5 {
            run(&d, Some("k"), &format!("INSERT INTO t (p) VALUES ({p})")).unwrap();
        }
        let mut opts = ExecOptions {
            page_size: Some(2),
            ..Default::default()
        };
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let Outcome::Rows(r) = d.execute_text("SELECT * FROM t", Some("k"), &opts).unwrap()
            else {
                panic!()
            };
            seen += r.rows.len();
            pages += 1;
            match r.paging_state {
                Some(ps) => opts.paging_state = Some(ps),
                None => break,
            }
        }
        assert_eq!((seen, pages), (5, 3));
    }

    #[test]
    fn routing_names_the_table_and_the_bound_partition_key() {
        let d = db();
        run(&d, None, "CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").unwrap();
        run(
            &d,
            Some("k"),
            "CREATE TABLE t (p int, c int, v text, PRIMARY KEY (p, c))",
        )
        .unwrap();
        run(
            &d,
            Some("k"),
            "CREATE TABLE two (a int, b text, v int, PRIMARY KEY ((a, b)))",
        )
        .unwrap();
        let route = |q: &str, values: Vec<BoundValue>| {
            let parsed = cql::parse(q).unwrap();
            let opts = ExecOptions {
                values,
                ..Default::default()
            };
            d.routing(&parsed, Some("k"), &opts)
        };
        let one = BoundValue::Bytes(vec![0, 0, 0, 1]);
        let key = Some(vec![vec![0, 0, 0, 1]]);
        let r = route(
            "SELECT * FROM t WHERE p = ? AND c = ?",
            vec![one.clone(), one.clone()],
        );
        assert_eq!(r.table.as_deref(), Some("k.t"));
        assert_eq!(r.key, key);
        let r = route(
            "INSERT INTO t (c, p, v) VALUES (?, ?, 'x')",
            vec![BoundValue::Bytes(vec![0, 0, 0, 9]), one.clone()],
        );
        assert_eq!(r.key, key);
        assert_eq!(
            route("UPDATE t SET v = 'y' WHERE p = 1 AND c = 2", vec![]).key,
            key
        );
        assert_eq!(route("DELETE FROM k.t WHERE p = 1", vec![]).key, key);
        // Not a single partition, or not all bound: the table only.
        let r = route("SELECT * FROM t WHERE p IN (1, 2)", vec![]);
        assert_eq!((r.table.as_deref(), r.key), (Some("k.t"), None));
        assert_eq!(route("SELECT * FROM t", vec![]).key, None);
        assert_eq!(
            route("SELECT * FROM t WHERE p = ?", vec![BoundValue::Null]).key,
            None
        );
        assert_eq!(
            route("SELECT * FROM t WHERE p = ?", vec![]).key,
            None,
            "values missing"
        );
        // Composite keys in partition key order, whatever the order in the statement.
        let r = route("SELECT * FROM two WHERE b = 'x' AND a = 1", vec![]);
        assert_eq!(r.key, Some(vec![vec![0, 0, 0, 1], b"x".to_vec()]));
        // System tables and statements without a table.
        let r = route("SELECT * FROM system.peers", vec![]);
        assert_eq!((r.table.as_deref(), r.key), (Some("system.peers"), None));
        assert_eq!(route("USE k", vec![]), Routing::default());
        assert_eq!(route("SELECT * FROM nope", vec![]), Routing::default());
        let r = route("BEGIN BATCH INSERT INTO t (p, c) VALUES (1, 1); INSERT INTO t (p, c) VALUES (2, 1); APPLY BATCH", vec![]);
        assert_eq!((r.table.as_deref(), r.key), (Some("k.t"), key));
    }

    #[test]
    fn system_peers_answer_as_the_serving_node() {
        let mut a = system::NodeInfo::for_tests();
        let mut b = system::NodeInfo::for_tests();
        b.address = "127.0.0.2".parse().unwrap();
        b.host_id = [2; 16];
        a.tokens = vec![-5];
        b.tokens = vec![5];
        let d = Db::new(vec![a, b]);
        let as_node = |node: usize, q: &str| {
            let opts = ExecOptions {
                node,
                ..Default::default()
            };
            rows(d.execute_text(q, None, &opts).unwrap())
        };
        assert_eq!(
            as_node(0, "SELECT peer FROM system.peers"),
            vec![vec![Some(vec![127, 0, 0, 2])]]
        );
        assert_eq!(
            as_node(1, "SELECT peer FROM system.peers"),
            vec![vec![Some(vec![127, 0, 0, 1])]]
        );
        assert_eq!(
            as_node(1, "SELECT rpc_address FROM system.local"),
            vec![vec![Some(vec![127, 0, 0, 2])]]
        );
        assert_eq!(
            (d.owner(-10), d.owner(0), d.owner(6)),
            (Some(0), Some(1), Some(0))
        );
    }
}
