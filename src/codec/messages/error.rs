//! ERROR: code, message and the code-specific extras.

use crate::codec::error::CodecError;
use crate::codec::primitives::{
    byte, consistency, counted, inetaddr, int, optional, run, short, short_bytes, string,
    string_list, write, Consistency, PResult, StringList,
};

/// Error codes of the native protocol.
pub mod codes {
    /// Declares each code as a constant, and [`name`], which names them.
    macro_rules! codes {
        ($($code:ident = $value:literal => $name:literal,)+) => {
            $(pub const $code: i32 = $value;)+

            /// The code's name, as the specification spells it.
            pub fn name(code: i32) -> &'static str {
                match code {
                    $($code => $name,)+
                    _ => "Unknown",
                }
            }
        };
    }

    codes! {
        SERVER_ERROR = 0x0000 => "Server error",
        PROTOCOL_ERROR = 0x000A => "Protocol error",
        AUTHENTICATION_ERROR = 0x0100 => "Authentication error",
        UNAVAILABLE = 0x1000 => "Unavailable exception",
        OVERLOADED = 0x1001 => "Overloaded",
        IS_BOOTSTRAPPING = 0x1002 => "Is_bootstrapping",
        TRUNCATE_ERROR = 0x1003 => "Truncate_error",
        WRITE_TIMEOUT = 0x1100 => "Write_timeout",
        READ_TIMEOUT = 0x1200 => "Read_timeout",
        READ_FAILURE = 0x1300 => "Read_failure",
        FUNCTION_FAILURE = 0x1400 => "Function_failure",
        WRITE_FAILURE = 0x1500 => "Write_failure",
        CDC_WRITE_FAILURE = 0x1600 => "CDC_WRITE_FAILURE",
        CAS_WRITE_UNKNOWN = 0x1700 => "CAS_WRITE_UNKNOWN",
        SYNTAX_ERROR = 0x2000 => "Syntax_error",
        UNAUTHORIZED = 0x2100 => "Unauthorized",
        INVALID = 0x2200 => "Invalid",
        CONFIG_ERROR = 0x2300 => "Config_error",
        ALREADY_EXISTS = 0x2400 => "Already_exists",
        UNPREPARED = 0x2500 => "Unprepared",
    }
}

/// Failures of a Read_failure or Write_failure: a count (v4) or a map of endpoints to failure
/// codes (v5), kept raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failures<'a> {
    Count(i32),
    ReasonMap { count: i32, raw: &'a [u8] },
}

/// The code-specific part of an ERROR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorExtra<'a> {
    None,
    Unavailable {
        consistency: Consistency,
        required: i32,
        alive: i32,
    },
    WriteTimeout {
        consistency: Consistency,
        received: i32,
        block_for: i32,
        write_type: &'a str,
        /// v5, CAS writes only.
        contentions: Option<u16>,
    },
    ReadTimeout {
        consistency: Consistency,
        received: i32,
        block_for: i32,
        data_present: bool,
    },
    ReadFailure {
        consistency: Consistency,
        received: i32,
        block_for: i32,
        failures: Failures<'a>,
        data_present: bool,
    },
    FunctionFailure {
        keyspace: &'a str,
        function: &'a str,
        arg_types: StringList<'a>,
    },
    WriteFailure {
        consistency: Consistency,
        received: i32,
        block_for: i32,
        failures: Failures<'a>,
        write_type: &'a str,
    },
    CasWriteUnknown {
        consistency: Consistency,
        received: i32,
        block_for: i32,
    },
    AlreadyExists {
        keyspace: &'a str,
        table: &'a str,
    },
    Unprepared {
        id: &'a [u8],
    },
}

/// An ERROR body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorBody<'a> {
    pub code: i32,
    pub message: &'a str,
    pub extra: ErrorExtra<'a>,
}

fn cl_received_block(i: &[u8]) -> PResult<'_, (Consistency, i32, i32)> {
    let (i, c) = consistency(i)?;
    let (i, r) = int(i)?;
    let (i, b) = int(i)?;
    Ok((i, (c, r, b)))
}

fn failures(i: &[u8], version: u8) -> PResult<'_, Failures<'_>> {
    let (i, count) = int(i)?;
    if version < 5 {
        return Ok((i, Failures::Count(count)));
    }
    // A negative count reads no endpoints.
    let n = usize::try_from(count).unwrap_or(0);
    let (i, raw) = counted(i, n, |i| {
        let (i, _endpoint) = inetaddr(i)?;
        short(i)
    })?;
    Ok((i, Failures::ReasonMap { count, raw }))
}

fn extra(i: &[u8], code: i32, version: u8) -> PResult<'_, ErrorExtra<'_>> {
    use codes::*;
    match code {
        UNAVAILABLE => {
            let (i, (consistency, required, alive)) = cl_received_block(i)?;
            Ok((
                i,
                ErrorExtra::Unavailable {
                    consistency,
                    required,
                    alive,
                },
            ))
        }
        WRITE_TIMEOUT => {
            let (i, (consistency, received, block_for)) = cl_received_block(i)?;
            let (i, write_type) = string(i)?;
            let (i, contentions) = optional(i, version >= 5 && write_type == "CAS", short)?;
            Ok((
                i,
                ErrorExtra::WriteTimeout {
                    consistency,
                    received,
                    block_for,
                    write_type,
                    contentions,
                },
            ))
        }
        READ_TIMEOUT => {
            let (i, (consistency, received, block_for)) = cl_received_block(i)?;
            let (i, d) = byte(i)?;
            Ok((
                i,
                ErrorExtra::ReadTimeout {
                    consistency,
                    received,
                    block_for,
                    data_present: d != 0,
                },
            ))
        }
        READ_FAILURE => {
            let (i, (consistency, received, block_for)) = cl_received_block(i)?;
            let (i, failures) = failures(i, version)?;
            let (i, d) = byte(i)?;
            Ok((
                i,
                ErrorExtra::ReadFailure {
                    consistency,
                    received,
                    block_for,
                    failures,
                    data_present: d != 0,
                },
            ))
        }
        FUNCTION_FAILURE => {
            let (i, keyspace) = string(i)?;
            let (i, function) = string(i)?;
            let (i, arg_types) = string_list(i)?;
            Ok((
                i,
                ErrorExtra::FunctionFailure {
                    keyspace,
                    function,
                    arg_types,
                },
            ))
        }
        WRITE_FAILURE => {
            let (i, (consistency, received, block_for)) = cl_received_block(i)?;
            let (i, failures) = failures(i, version)?;
            let (i, write_type) = string(i)?;
            Ok((
                i,
                ErrorExtra::WriteFailure {
                    consistency,
                    received,
                    block_for,
                    failures,
                    write_type,
                },
            ))
        }
        CAS_WRITE_UNKNOWN => {
            let (i, (consistency, received, block_for)) = cl_received_block(i)?;
            Ok((
                i,
                ErrorExtra::CasWriteUnknown {
                    consistency,
                    received,
                    block_for,
                },
            ))
        }
        ALREADY_EXISTS => {
            let (i, keyspace) = string(i)?;
            let (i, table) = string(i)?;
            Ok((i, ErrorExtra::AlreadyExists { keyspace, table }))
        }
        UNPREPARED => {
            let (i, id) = short_bytes(i)?;
            Ok((i, ErrorExtra::Unprepared { id }))
        }
        _ => Ok((i, ErrorExtra::None)),
    }
}

impl<'a> ErrorBody<'a> {
    /// Decodes an ERROR body of protocol `version` (prefixes already stripped).
    pub fn decode(body: &'a [u8], version: u8) -> Result<Self, CodecError> {
        let (_, e) = run("ERROR", body, |i| {
            let (i, code) = int(i)?;
            let (i, message) = string(i)?;
            let (i, extra) = extra(i, code, version)?;
            Ok((
                i,
                ErrorBody {
                    code,
                    message,
                    extra,
                },
            ))
        })?;
        Ok(e)
    }

    /// The code's name.
    pub fn name(&self) -> &'static str {
        codes::name(self.code)
    }

    /// Appends the body (code, message, extras) for protocol `version`.
    pub fn encode(&self, version: u8, out: &mut Vec<u8>) {
        write::int(out, self.code);
        write::string(out, self.message);
        if let Some((consistency, a, b)) = self.extra.counts() {
            write::short(out, consistency.0);
            write::int(out, a);
            write::int(out, b);
        }
        let fails = |out: &mut Vec<u8>, f: &Failures<'_>| match f {
            Failures::Count(n) => write::int(out, *n),
            Failures::ReasonMap { count, raw } => {
                write::int(out, *count);
                if version >= 5 {
                    out.extend_from_slice(raw);
                }
            }
        };
        match &self.extra {
            ErrorExtra::None
            | ErrorExtra::Unavailable { .. }
            | ErrorExtra::CasWriteUnknown { .. } => {}
            ErrorExtra::WriteTimeout {
                write_type,
                contentions,
                ..
            } => {
                write::string(out, write_type);
                if let (true, Some(c)) = (version >= 5 && *write_type == "CAS", contentions) {
                    write::short(out, *c);
                }
            }
            ErrorExtra::ReadTimeout { data_present, .. } => out.push(u8::from(*data_present)),
            ErrorExtra::ReadFailure {
                failures,
                data_present,
                ..
            } => {
                fails(out, failures);
                out.push(u8::from(*data_present));
            }
            ErrorExtra::FunctionFailure {
                keyspace,
                function,
                arg_types,
            } => {
                write::string(out, keyspace);
                write::string(out, function);
                write::short(out, arg_types.len() as u16);
                for a in arg_types.iter() {
                    write::string(out, a);
                }
            }
            ErrorExtra::WriteFailure {
                failures,
                write_type,
                ..
            } => {
                fails(out, failures);
                write::string(out, write_type);
            }
            ErrorExtra::AlreadyExists { keyspace, table } => {
                write::string(out, keyspace);
                write::string(out, table);
            }
            ErrorExtra::Unprepared { id } => write::short_bytes(out, id),
        }
    }
}

impl ErrorExtra<'_> {
    /// The `<consistency><int><int>` these extras begin with: the consistency and the required
    /// and alive replicas of an Unavailable, the consistency and the received and required
    /// (block_for) replies of a timeout or a failure.
    fn counts(&self) -> Option<(Consistency, i32, i32)> {
        match *self {
            ErrorExtra::Unavailable {
                consistency,
                required,
                alive,
            } => Some((consistency, required, alive)),
            ErrorExtra::WriteTimeout {
                consistency,
                received,
                block_for,
                ..
            }
            | ErrorExtra::ReadTimeout {
                consistency,
                received,
                block_for,
                ..
            }
            | ErrorExtra::ReadFailure {
                consistency,
                received,
                block_for,
                ..
            }
            | ErrorExtra::WriteFailure {
                consistency,
                received,
                block_for,
                ..
            }
            | ErrorExtra::CasWriteUnknown {
                consistency,
                received,
                block_for,
            } => Some((consistency, received, block_for)),
            ErrorExtra::None
            | ErrorExtra::FunctionFailure { .. }
            | ErrorExtra::AlreadyExists { .. }
            | ErrorExtra::Unprepared { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_extra_round_trips() {
        let mut args = Vec::new();
        write::short(&mut args, 1);
        write::string(&mut args, "int");
        let (_, arg_types) = string_list(&args).unwrap();
        let reasons = [4u8, 10, 0, 0, 1, 0, 0];
        let c = Consistency(1);
        let cases: Vec<(i32, ErrorExtra<'_>, u8)> = vec![
            (codes::SERVER_ERROR, ErrorExtra::None, 4),
            (codes::UNAUTHORIZED, ErrorExtra::None, 4),
            (codes::AUTHENTICATION_ERROR, ErrorExtra::None, 5),
            (codes::PROTOCOL_ERROR, ErrorExtra::None, 3),
            (
                codes::UNAVAILABLE,
                ErrorExtra::Unavailable {
                    consistency: c,
                    required: 3,
                    alive: 1,
                },
                4,
            ),
            (
                codes::WRITE_TIMEOUT,
                ErrorExtra::WriteTimeout {
                    consistency: c,
                    received: 0,
                    block_for: 1,
                    write_type: "CAS",
                    contentions: Some(2),
                },
                5,
            ),
            (
                codes::WRITE_TIMEOUT,
                ErrorExtra::WriteTimeout {
                    consistency: c,
                    received: 0,
                    block_for: 1,
                    write_type: "SIMPLE",
                    contentions: None,
                },
                4,
            ),
            (
                codes::READ_TIMEOUT,
                ErrorExtra::ReadTimeout {
                    consistency: c,
                    received: 0,
                    block_for: 1,
                    data_present: true,
                },
                4,
            ),
            (
                codes::READ_FAILURE,
                ErrorExtra::ReadFailure {
                    consistency: c,
                    received: 0,
                    block_for: 1,
                    failures: Failures::Count(1),
                    data_present: false,
                },
                4,
            ),
            (
                codes::READ_FAILURE,
                ErrorExtra::ReadFailure {
                    consistency: c,
                    received: 0,
                    block_for: 1,
                    failures: Failures::ReasonMap {
                        count: 1,
                        raw: &reasons,
                    },
                    data_present: false,
                },
                5,
            ),
            (
                codes::FUNCTION_FAILURE,
                ErrorExtra::FunctionFailure {
                    keyspace: "ks",
                    function: "f",
                    arg_types,
                },
                4,
            ),
            (
                codes::WRITE_FAILURE,
                ErrorExtra::WriteFailure {
                    consistency: c,
                    received: 0,
                    block_for: 1,
                    failures: Failures::ReasonMap {
                        count: 1,
                        raw: &reasons,
                    },
                    write_type: "BATCH",
                },
                5,
            ),
            (
                codes::CAS_WRITE_UNKNOWN,
                ErrorExtra::CasWriteUnknown {
                    consistency: c,
                    received: 0,
                    block_for: 1,
                },
                5,
            ),
            (
                codes::ALREADY_EXISTS,
                ErrorExtra::AlreadyExists {
                    keyspace: "ks",
                    table: "t",
                },
                4,
            ),
            (
                codes::UNPREPARED,
                ErrorExtra::Unprepared { id: &[1, 2, 3] },
                4,
            ),
        ];
        for (code, extra, version) in cases {
            let e = ErrorBody {
                code,
                message: "msg",
                extra,
            };
            let mut b = Vec::new();
            e.encode(version, &mut b);
            assert_eq!(ErrorBody::decode(&b, version).unwrap(), e, "{}", e.name());
            assert!(
                ErrorBody::decode(&b[..b.len() - 1], version).is_err() || extra == ErrorExtra::None
            );
        }
    }
}
