//! All unsafe NGINX glue.
