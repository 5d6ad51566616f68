//! What an identity may do: a role-based policy per keyspace, table and operation.
