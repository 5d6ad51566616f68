//! The CQL statement classifier. No NGINX types.
