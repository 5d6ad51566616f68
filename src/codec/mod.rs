//! The CQL native protocol codec (v3, v4, v5). No NGINX types.
