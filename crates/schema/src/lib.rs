//! The schema and where it lives: the roles and migrations (`migrate`), and the private
//! PostgreSQL cluster run from the machine's own binaries (`embedded`).
//!
//! This crate holds no compile-checked query, so it builds before any database exists: the
//! `with-database` program it ships starts a cluster, migrates a database and runs a command
//! against it, which is how the offline query data of the other crates is made and checked
//! (`scripts/sqlx-prepare`).

pub mod distribute;
pub mod embedded;
pub mod migrate;
