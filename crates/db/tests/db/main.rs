//! The database crate's tests, one binary (one link): each module one area, each test its own database.

mod access_log;
mod calendar;
mod cancellation;
mod distribute;
mod embedded;
mod encryption;
mod isolation;
mod job_tenant;
mod migration_data;
mod pgbouncer;
mod schema;
