//! Task budgets (DESIGN.md "Budgets").

pub mod usage;
