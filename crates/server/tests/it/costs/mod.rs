//! Cost transparency over real HTTP: custom meter events (idempotent, also across replicas
//! sharing a PostgreSQL catalog), the price sheet, cost reports.

mod budgets;
mod events;
mod kubernetes;
mod recommendations;
mod report;
mod statements;
