//! The integration tests, as one binary (one link of polars, sqlx and the Google clients instead
//! of one per file). Each module is one area; database tests read `XNGIN_TEST_POSTGRES_URL`,
//! `XNGIN_TEST_MYSQL_URL` and `XNGIN_TEST_BIGQUERY_URL` (see `common`).

mod common;

mod assign;
mod bigquery;
mod cluster;
mod create_testing_dwh;
mod fields;
mod filters;
mod gsheets;
mod inwh;
mod inwh_identity;
mod power;
mod secrets;
mod settings;
mod sheet;
mod write_killed;
