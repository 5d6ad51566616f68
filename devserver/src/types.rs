//! CQL data types: names, [option] ids, serialization, ordering.

use std::cmp::Ordering;

use crate::wire::put_u16;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColType {
    Ascii,
    BigInt,
    Blob,
    Boolean,
    Counter,
    Double,
    Float,
    Int,
    Timestamp,
    Uuid,
    Varchar,
    Varint,
    TimeUuid,
    Inet,
    Date,
    SmallInt,
    TinyInt,
    List(Box<ColType>),
    Map(Box<ColType>, Box<ColType>),
    Set(Box<ColType>),
}

impl ColType {
    /// Parses a CQL type name as written in CREATE TABLE (`frozen<>` is accepted and ignored).
    pub fn parse(s: &str) -> Option<ColType> {
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        if let Some(open) = lower.find('<') {
            if !lower.ends_with('>') {
                return None;
            }
            let outer = lower[..open].trim();
            let inner = &s[open + 1..s.len() - 1];
            return match outer {
                "frozen" => ColType::parse(inner),
                "list" => Some(ColType::List(Box::new(ColType::parse(inner)?))),
                "set" => Some(ColType::Set(Box::new(ColType::parse(inner)?))),
                "map" => {
                    let (k, v) = split_top_comma(inner)?;
                    Some(ColType::Map(
                        Box::new(ColType::parse(k)?),
                        Box::new(ColType::parse(v)?),
                    ))
                }
                _ => None,
            };
        }
        Some(match lower.as_str() {
            "ascii" => ColType::Ascii,
            "bigint" => ColType::BigInt,
            "blob" => ColType::Blob,
            "boolean" => ColType::Boolean,
            "counter" => ColType::Counter,
            "double" => ColType::Double,
            "float" => ColType::Float,
            "int" => ColType::Int,
            "timestamp" => ColType::Timestamp,
            "uuid" => ColType::Uuid,
            "text" | "varchar" => ColType::Varchar,
            "varint" => ColType::Varint,
            "timeuuid" => ColType::TimeUuid,
            "inet" => ColType::Inet,
            "date" => ColType::Date,
            "smallint" => ColType::SmallInt,
            "tinyint" => ColType::TinyInt,
            _ => return None,
        })
    }

    /// The name as system_schema.columns spells it.
    pub fn cql_name(&self) -> String {
        match self {
            ColType::Ascii => "ascii".into(),
            ColType::BigInt => "bigint".into(),
            ColType::Blob => "blob".into(),
            ColType::Boolean => "boolean".into(),
            ColType::Counter => "counter".into(),
            ColType::Double => "double".into(),
            ColType::Float => "float".into(),
            ColType::Int => "int".into(),
            ColType::Timestamp => "timestamp".into(),
            ColType::Uuid => "uuid".into(),
            ColType::Varchar => "text".into(),
            ColType::Varint => "varint".into(),
            ColType::TimeUuid => "timeuuid".into(),
            ColType::Inet => "inet".into(),
            ColType::Date => "date".into(),
            ColType::SmallInt => "smallint".into(),
            ColType::TinyInt => "tinyint".into(),
            ColType::List(e) => format!("list<{}>", e.cql_name()),
            ColType::Set(e) => format!("set<{}>", e.cql_name()),
            ColType::Map(k, v) => format!("map<{}, {}>", k.cql_name(), v.cql_name()),
        }
    }

    /// Writes the [option] describing this type in result metadata.
    pub fn write_option(&self, out: &mut Vec<u8>) {
        let id: u16 = match self {
            ColType::Ascii => 0x01,
            ColType::BigInt => 0x02,
            ColType::Blob => 0x03,
            ColType::Boolean => 0x04,
            ColType::Counter => 0x05,
            ColType::Double => 0x07,
            ColType::Float => 0x08,
            ColType::Int => 0x09,
            ColType::Timestamp => 0x0B,
            ColType::Uuid => 0x0C,
            ColType::Varchar => 0x0D,
            ColType::Varint => 0x0E,
            ColType::TimeUuid => 0x0F,
            ColType::Inet => 0x10,
            ColType::Date => 0x11,
            ColType::SmallInt => 0x13,
            ColType::TinyInt => 0x14,
            ColType::List(_) => 0x20,
            ColType::Map(_, _) => 0x21,
            ColType::Set(_) => 0x22,
        };
        put_u16(out, id);
        match self {
            ColType::List(e) | ColType::Set(e) => e.write_option(out),
            ColType::Map(k, v) => {
                k.write_option(out);
                v.write_option(out);
            }
            _ => {}
        }
    }

    pub fn is_collection(&self) -> bool {
        matches!(
            self,
            ColType::List(_) | ColType::Set(_) | ColType::Map(_, _)
        )
    }

    /// Byte width of fixed-size types.
    fn fixed_len(&self) -> Option<usize> {
        match self {
            ColType::BigInt | ColType::Counter | ColType::Double | ColType::Timestamp => Some(8),
            ColType::Int | ColType::Float | ColType::Date => Some(4),
            ColType::Uuid | ColType::TimeUuid => Some(16),
            ColType::Boolean | ColType::TinyInt => Some(1),
            ColType::SmallInt => Some(2),
            _ => None,
        }
    }

    /// Checks a serialized value bound by a client, and puts collections in
    /// canonical order (sets and map keys sorted, duplicates removed).
    pub fn validate(&self, b: &[u8]) -> Result<Vec<u8>, String> {
        if let Some(n) = self.fixed_len() {
            if b.len() != n && !b.is_empty() {
                return Err(format!(
                    "Expected {} or 0 byte {} ({})",
                    n,
                    self.cql_name(),
                    b.len()
                ));
            }
            return Ok(b.to_vec());
        }
        match self {
            ColType::Varchar => std::str::from_utf8(b)
                .map(|_| b.to_vec())
                .map_err(|_| "String didn't validate.".to_string()),
            ColType::Ascii => {
                if b.is_ascii() {
                    Ok(b.to_vec())
                } else {
                    Err("Invalid byte for ascii".into())
                }
            }
            ColType::Inet => {
                if b.len() == 4 || b.len() == 16 || b.is_empty() {
                    Ok(b.to_vec())
                } else {
                    Err(format!("Invalid inet length {}", b.len()))
                }
            }
            ColType::List(e) => {
                let items = decode_collection(b, 1).ok_or("Not enough bytes to read a list")?;
                let items: Result<Vec<_>, _> = items.iter().map(|i| e.validate(&i[0])).collect();
                Ok(encode_collection(
                    &items?.into_iter().map(|i| vec![i]).collect::<Vec<_>>(),
                ))
            }
            ColType::Set(e) => {
                let items = decode_collection(b, 1).ok_or("Not enough bytes to read a set")?;
                let mut v = items
                    .iter()
                    .map(|i| e.validate(&i[0]))
                    .collect::<Result<Vec<_>, _>>()?;
                v.sort_by(|a, b| e.compare(a, b));
                v.dedup_by(|a, b| e.compare(a, b) == Ordering::Equal);
                Ok(encode_collection(
                    &v.into_iter().map(|i| vec![i]).collect::<Vec<_>>(),
                ))
            }
            ColType::Map(k, vt) => {
                let items = decode_collection(b, 2).ok_or("Not enough bytes to read a map")?;
                let mut v = Vec::with_capacity(items.len());
                for kv in items {
                    v.push(vec![k.validate(&kv[0])?, vt.validate(&kv[1])?]);
                }
                v.sort_by(|a, b| k.compare(&a[0], &b[0]));
                v.dedup_by(|a, b| k.compare(&a[0], &b[0]) == Ordering::Equal);
                Ok(encode_collection(&v))
            }
            _ => Ok(b.to_vec()),
        }
    }

    /// Orders two serialized values the way Cassandra orders clustering columns.
    pub fn compare(&self, a: &[u8], b: &[u8]) -> Ordering {
        if a.is_empty() || b.is_empty() {
            return a.len().cmp(&b.len());
        }
        match self {
            ColType::Int
            | ColType::BigInt
            | ColType::Counter
            | ColType::Timestamp
            | ColType::SmallInt
            | ColType::TinyInt => int_of(a).cmp(&int_of(b)),
            ColType::Double if a.len() == 8 && b.len() == 8 => {
                let x = f64::from_be_bytes(a.try_into().unwrap_or([0; 8]));
                let y = f64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
                x.total_cmp(&y)
            }
            ColType::Float if a.len() == 4 && b.len() == 4 => {
                let x = f32::from_be_bytes(a.try_into().unwrap_or([0; 4]));
                let y = f32::from_be_bytes(b.try_into().unwrap_or([0; 4]));
                x.total_cmp(&y)
            }
            ColType::TimeUuid if a.len() == 16 && b.len() == 16 => {
                timeuuid_ts(a).cmp(&timeuuid_ts(b)).then_with(|| a.cmp(b))
            }
            ColType::Boolean => a.cmp(b),
            _ => a.cmp(b),
        }
    }
}

fn split_top_comma(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

fn int_of(b: &[u8]) -> i64 {
    let mut v: i64 = if b.first().is_some_and(|x| x & 0x80 != 0) {
        -1
    } else {
        0
    };
    for x in b.iter().take(8) {
        v = (v << 8) | *x as i64;
    }
    v
}

fn timeuuid_ts(u: &[u8]) -> u64 {
    let time_low = u32::from_be_bytes([u[0], u[1], u[2], u[3]]) as u64;
    let time_mid = u16::from_be_bytes([u[4], u[5]]) as u64;
    let time_hi = (u16::from_be_bytes([u[6], u[7]]) & 0x0fff) as u64;
    time_hi << 48 | time_mid << 32 | time_low
}

/// Splits a serialized collection into items of `arity` values (1 for list/set, 2 for map).
pub fn decode_collection(b: &[u8], arity: usize) -> Option<Vec<Vec<Vec<u8>>>> {
    let mut r = crate::wire::Reader::new(b);
    let n = r.i32().ok()?;
    if n < 0 || n as usize > b.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let mut item = Vec::with_capacity(arity);
        for _ in 0..arity {
            item.push(r.bytes().ok()?.unwrap_or_default());
        }
        out.push(item);
    }
    if r.remaining() != 0 {
        return None;
    }
    Some(out)
}

pub fn encode_collection(items: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(items.len() as i32).to_be_bytes());
    for item in items {
        for v in item {
            out.extend_from_slice(&(v.len() as i32).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
    out
}

// ------------------------------------------------------------ value helpers

pub fn v_text(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

pub fn v_int(i: i32) -> Option<Vec<u8>> {
    Some(i.to_be_bytes().to_vec())
}

pub fn v_bool(b: bool) -> Option<Vec<u8>> {
    Some(vec![b as u8])
}

pub fn v_double(d: f64) -> Option<Vec<u8>> {
    Some(d.to_be_bytes().to_vec())
}

pub fn v_inet(ip: std::net::IpAddr) -> Option<Vec<u8>> {
    Some(match ip {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    })
}

pub fn v_uuid(u: [u8; 16]) -> Option<Vec<u8>> {
    Some(u.to_vec())
}

pub fn v_text_list(items: &[&str]) -> Option<Vec<u8>> {
    Some(encode_collection(
        &items
            .iter()
            .map(|s| vec![s.as_bytes().to_vec()])
            .collect::<Vec<_>>(),
    ))
}

pub fn v_text_map(items: &[(&str, &str)]) -> Option<Vec<u8>> {
    let mut v: Vec<Vec<Vec<u8>>> = items
        .iter()
        .map(|(k, v)| vec![k.as_bytes().to_vec(), v.as_bytes().to_vec()])
        .collect();
    v.sort();
    Some(encode_collection(&v))
}

pub fn v_blob_map(items: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    let mut v: Vec<Vec<Vec<u8>>> = items
        .iter()
        .map(|(k, v)| vec![k.as_bytes().to_vec(), v.to_vec()])
        .collect();
    v.sort();
    Some(encode_collection(&v))
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn format_uuid(u: &[u8]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    if h.len() != 32 {
        return h;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses a timestamp literal: `yyyy-mm-dd[( |T)hh:mm[:ss[.fff]]][Z|(+|-)hh[:]mm]`.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], s[i + 1..].trim()),
        None => (s, ""),
    };
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: i64 = d.next()?.parse().ok()?;
    let da: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let mut ms_of_day = 0i64;
    let mut offset_min = 0i64;
    if !rest.is_empty() {
        let (time, tz) = match rest.find(['Z', 'z', '+', '-']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut t = time.trim().split(':');
        let h: i64 = t.next()?.parse().ok()?;
        let mi: i64 = t.next()?.parse().ok()?;
        let (sec, frac) = match t.next() {
            Some(sf) => match sf.split_once('.') {
                Some((a, b)) => {
                    let ms: i64 = format!("{b:0<3}").get(..3)?.parse().ok()?;
                    (a.parse::<i64>().ok()?, ms)
                }
                None => (sf.parse::<i64>().ok()?, 0),
            },
            None => (0, 0),
        };
        ms_of_day = ((h * 60 + mi) * 60 + sec) * 1000 + frac;
        if !tz.is_empty() && !tz.eq_ignore_ascii_case("z") {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let digits: String = tz[1..].chars().filter(|c| c.is_ascii_digit()).collect();
            if digits.len() != 4 {
                return None;
            }
            let hh: i64 = digits[..2].parse().ok()?;
            let mm: i64 = digits[2..].parse().ok()?;
            offset_min = sign * (hh * 60 + mm);
        }
    }
    let days = days_from_civil(y, mo, da);
    Some(days * 86_400_000 + ms_of_day - offset_min * 60_000)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_roundtrip() {
        for s in ["int", "map<text, bigint>", "set<uuid>", "list<blob>"] {
            assert_eq!(ColType::parse(s).unwrap().cql_name(), s);
        }
        assert_eq!(ColType::parse("varchar"), Some(ColType::Varchar));
        assert_eq!(
            ColType::parse("frozen<set<int>>"),
            Some(ColType::Set(Box::new(ColType::Int)))
        );
        assert_eq!(ColType::parse("nope"), None);
    }

    #[test]
    fn ordering_is_typed() {
        let t = ColType::Int;
        assert_eq!(
            t.compare(&(-1i32).to_be_bytes(), &1i32.to_be_bytes()),
            Ordering::Less
        );
        let d = ColType::Double;
        assert_eq!(
            d.compare(&(-2.5f64).to_be_bytes(), &1.0f64.to_be_bytes()),
            Ordering::Less
        );
    }

    #[test]
    fn sets_are_canonical() {
        let t = ColType::Set(Box::new(ColType::Varchar));
        let raw = encode_collection(&[
            vec![b"b".to_vec()],
            vec![b"a".to_vec()],
            vec![b"b".to_vec()],
        ]);
        let v = t.validate(&raw).unwrap();
        assert_eq!(
            v,
            encode_collection(&[vec![b"a".to_vec()], vec![b"b".to_vec()]])
        );
        assert!(t.validate(&[0, 0, 0, 5]).is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("1970-01-02 00:00:01.5"), Some(86_401_500));
        assert_eq!(
            parse_timestamp("2020-01-01T00:00:00+0100"),
            Some(1_577_833_200_000)
        );
        assert_eq!(parse_timestamp("garbage"), None);
    }

    #[test]
    fn uuids() {
        let u = parse_uuid("42570ec0-e5e1-11f1-ac57-a36c47cc474d").unwrap();
        assert_eq!(format_uuid(&u), "42570ec0-e5e1-11f1-ac57-a36c47cc474d");
        assert!(parse_uuid("42570ec0").is_none());
    }
}
