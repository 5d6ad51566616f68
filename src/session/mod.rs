//! The per-connection session state machine. No NGINX types.
