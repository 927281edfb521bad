//! Cost transparency over real HTTP: custom meter events (idempotent, also across replicas
//! sharing a PostgreSQL catalog), the price sheet, cost reports.

mod budgets;
mod events;
mod recommendations;
mod report;
mod statements;
