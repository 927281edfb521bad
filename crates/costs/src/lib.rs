//! Cost allocation for a shared platform: who is charged what, to the last micro-unit.
//!
//! Pure logic, no I/O. [`money`] holds exact amounts (integer micro-units of one currency)
//! and [`split`] divides an amount by weights with largest-remainder rounding, so the parts
//! always add up to the whole. [`pricing`] turns measured usage into costs per category with a
//! versioned price sheet (a price change applies from its date on, never backwards). [`allocate`] takes a window's costed allocation rows (one
//! per tenant store, namespace or container, each with properties and a cost per
//! [`Category`]), the window's idle capacity cost and its shared costs, and produces the
//! report: rows aggregated by the requested properties, idle shared or shown apart, shared
//! costs distributed evenly or by weight. Every report holds
//! `Σ rows + idle + unallocated shared + filtered out = total`, exactly; a filter selects
//! rows of the unfiltered report and never changes their numbers (ADR 011). [`window`]
//! parses report windows and steps; [`chargeback`] prices metered usage per step and
//! allocates each step, capacity not used becoming idle.
//!
//! The semantics follow OpenCost's allocation model (`max(request, usage)` is the caller's;
//! idle per resource, weighted by the resource's cost in the same idle scope; shared
//! coefficients computed before idle and before filtering), and reproduce its canonical
//! mock-set results (tests/it/golden.rs), except where OpenCost is known to be wrong: with
//! a filter, shared costs and idle, the idle a shared row passes on is counted once.

#![forbid(unsafe_code)]

pub mod allocate;
pub mod chargeback;
pub mod money;
pub mod pricing;
pub mod split;
pub mod window;

pub use allocate::{
    AllocError, Allocation, Category, Costs, Filter, IdleCost, IdleShare, Query, Report, ReportRow,
    SharedCost, SplitBy, allocate,
};
pub use money::{Money, MoneyError};
pub use pricing::{Currency, PriceError, PriceSheet, Prices, Usage};
