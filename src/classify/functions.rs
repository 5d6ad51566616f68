//! Cassandra's native (system) functions: calling them needs no EXECUTE permission.
//!
//! An unqualified function name is looked up among the native functions first, then in the
//! current keyspace, as Cassandra does. A name that is not listed here is taken to be a
//! user-defined function and needs EXECUTE (failing closed on a native function this list
//! misses).

/// Native scalar and aggregate functions and selector functions of Cassandra 5.0,
/// lower case, sorted for binary search.
const NATIVE: &[&str] = &[
    "abs",
    "avg",
    "cast",
    "collection_avg",
    "collection_count",
    "collection_max",
    "collection_min",
    "collection_sum",
    "count",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_timeuuid",
    "currentdate",
    "currenttime",
    "currenttimestamp",
    "currenttimeuuid",
    "dateof",
    "exp",
    "format_bytes",
    "format_time",
    "from_json",
    "fromjson",
    "log",
    "log10",
    "map_keys",
    "map_values",
    "mask_default",
    "mask_hash",
    "mask_inner",
    "mask_null",
    "mask_outer",
    "mask_replace",
    "max",
    "max_timeuuid",
    "maxtimeuuid",
    "maxwritetime",
    "min",
    "min_timeuuid",
    "mintimeuuid",
    "now",
    "round",
    "similarity_cosine",
    "similarity_dot_product",
    "similarity_euclidean",
    "sum",
    "to_date",
    "to_json",
    "to_timestamp",
    "to_unix_timestamp",
    "todate",
    "tojson",
    "token",
    "totimestamp",
    "tounixtimestamp",
    "ttl",
    "unixtimestampof",
    "uuid",
    "write_time",
    "writetime",
];

/// CQL native types, for the blob conversion functions (`intasblob`, `blobasint`,
/// `int_as_blob`, `blob_as_int`).
const NATIVE_TYPES: &[&str] = &[
    "ascii",
    "bigint",
    "blob",
    "boolean",
    "counter",
    "date",
    "decimal",
    "double",
    "duration",
    "float",
    "inet",
    "int",
    "smallint",
    "text",
    "time",
    "timestamp",
    "timeuuid",
    "tinyint",
    "uuid",
    "varchar",
    "varint",
];

/// Whether an unqualified, resolved (folded or unquoted) function name is a native function.
pub fn is_native(name: &str) -> bool {
    if NATIVE.binary_search(&name).is_ok() {
        return true;
    }
    let ty = name
        .strip_suffix("_as_blob")
        .or_else(|| name.strip_suffix("asblob"))
        .or_else(|| name.strip_prefix("blob_as_"))
        .or_else(|| name.strip_prefix("blobas"));
    matches!(ty, Some(t) if NATIVE_TYPES.contains(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted() {
        assert!(NATIVE.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn natives() {
        for n in [
            "now",
            "token",
            "count",
            "intasblob",
            "blobastext",
            "int_as_blob",
            "mask_inner",
        ] {
            assert!(is_native(n), "{n}");
        }
        for n in ["myfunc", "fooasblob", "blobas", "Now"] {
            assert!(!is_native(n), "{n}");
        }
    }
}
