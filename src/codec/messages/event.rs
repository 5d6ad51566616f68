//! REGISTER, EVENT, and the schema change shared by EVENT and RESULT.

use crate::codec::error::CodecError;
use crate::codec::primitives::{inet, run, run_all, string, string_list, PResult, StringList};

/// REGISTER: the event types the client subscribes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Register<'a> {
    pub events: StringList<'a>,
}

impl<'a> Register<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, CodecError> {
        Ok(Register {
            events: run_all("REGISTER", body, string_list)?,
        })
    }
}

/// A schema change: `<change_type><target><options>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaChange<'a> {
    /// CREATED, UPDATED or DROPPED.
    pub change_type: &'a str,
    /// KEYSPACE, TABLE, TYPE, FUNCTION or AGGREGATE.
    pub target: &'a str,
    pub keyspace: &'a str,
    /// The table, type, function or aggregate name (not for KEYSPACE).
    pub name: Option<&'a str>,
    /// Argument types of a FUNCTION or AGGREGATE.
    pub arg_types: Option<StringList<'a>>,
}

pub(crate) fn schema_change(i: &[u8]) -> PResult<'_, SchemaChange<'_>> {
    let (i, change_type) = string(i)?;
    let (i, target) = string(i)?;
    let (i, keyspace) = string(i)?;
    let mut sc = SchemaChange {
        change_type,
        target,
        keyspace,
        name: None,
        arg_types: None,
    };
    match target {
        "KEYSPACE" => Ok((i, sc)),
        "TABLE" | "TYPE" => {
            let (i, n) = string(i)?;
            sc.name = Some(n);
            Ok((i, sc))
        }
        "FUNCTION" | "AGGREGATE" => {
            let (i, n) = string(i)?;
            let (i, a) = string_list(i)?;
            sc.name = Some(n);
            sc.arg_types = Some(a);
            Ok((i, sc))
        }
        _ => Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Tag,
        ))),
    }
}

/// EVENT pushed by the server on stream -1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventBody<'a> {
    TopologyChange {
        change: &'a str,
        address: &'a [u8],
        port: i32,
    },
    StatusChange {
        change: &'a str,
        address: &'a [u8],
        port: i32,
    },
    SchemaChange(SchemaChange<'a>),
}

impl<'a> EventBody<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, CodecError> {
        let (rest, t) = run("EVENT", body, string)?;
        match t {
            "TOPOLOGY_CHANGE" | "STATUS_CHANGE" => run_all("EVENT", rest, |i| {
                let (i, change) = string(i)?;
                let (i, (address, port)) = inet(i)?;
                Ok((
                    i,
                    if t == "TOPOLOGY_CHANGE" {
                        EventBody::TopologyChange {
                            change,
                            address,
                            port,
                        }
                    } else {
                        EventBody::StatusChange {
                            change,
                            address,
                            port,
                        }
                    },
                ))
            }),
            "SCHEMA_CHANGE" => Ok(EventBody::SchemaChange(run_all(
                "EVENT",
                rest,
                schema_change,
            )?)),
            _ => Err(CodecError::Malformed("EVENT: unknown type")),
        }
    }

    /// The event type as on the wire.
    pub fn event_type(&self) -> &'static str {
        match self {
            EventBody::TopologyChange { .. } => "TOPOLOGY_CHANGE",
            EventBody::StatusChange { .. } => "STATUS_CHANGE",
            EventBody::SchemaChange(_) => "SCHEMA_CHANGE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::primitives::write;

    #[test]
    fn register_and_events() {
        let mut b = Vec::new();
        write::short(&mut b, 2);
        write::string(&mut b, "SCHEMA_CHANGE");
        write::string(&mut b, "STATUS_CHANGE");
        let r = Register::decode(&b).unwrap();
        assert_eq!(
            r.events.iter().collect::<Vec<_>>(),
            ["SCHEMA_CHANGE", "STATUS_CHANGE"]
        );

        let mut e = Vec::new();
        for s in ["SCHEMA_CHANGE", "CREATED", "FUNCTION", "ks", "f"] {
            write::string(&mut e, s);
        }
        write::short(&mut e, 1);
        write::string(&mut e, "int");
        match EventBody::decode(&e).unwrap() {
            EventBody::SchemaChange(sc) => {
                assert_eq!(
                    (sc.target, sc.keyspace, sc.name),
                    ("FUNCTION", "ks", Some("f"))
                );
                assert_eq!(sc.arg_types.unwrap().len(), 1);
            }
            other => panic!("{other:?}"),
        }

        let mut e = Vec::new();
        write::string(&mut e, "STATUS_CHANGE");
        write::string(&mut e, "UP");
        e.extend_from_slice(&[4, 127, 0, 0, 1, 0, 0, 0x23, 0x52]);
        assert_eq!(
            EventBody::decode(&e).unwrap(),
            EventBody::StatusChange {
                change: "UP",
                address: &[127, 0, 0, 1],
                port: 9042
            }
        );
        let mut e = Vec::new();
        write::string(&mut e, "NOPE");
        assert!(EventBody::decode(&e).is_err());
    }
}
