//! rowgate: a gateway that lets an AI agent's SQL read only the rows its caller may see.
//!
//! The modules follow the request, in pipeline order (see `DESIGN.md`):
//! `parse` → `guard` → `resolve` → `rewrite`, driven by [`pipeline`]. `policy` loads the
//! policy files those stages consult; `check` is an independent verifier of rewritten SQL,
//! used by tests and fuzzing, that shares no code with `resolve`.

pub mod audit;
pub mod auth;
pub mod caller;
pub mod catalog;
pub mod check;
pub mod demo;
pub mod encode;
pub mod execute;
pub mod fuzzcheck;
pub mod guard;
pub mod http;
pub mod identity;
pub mod install;
pub mod metrics;
pub mod parse;
pub mod pipeline;
pub mod policy;
pub mod refusal;
pub mod reload;
pub mod resolve;
pub mod rewrite;
pub mod server;
pub mod sql;
