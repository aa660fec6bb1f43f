//! Sekisho, the access gateway. The request path (DESIGN.md): `gateway` (listener, identify,
//! route, decide) → `audit` (durable append) → `forward` (upstream) with an `assertion`.

pub mod assertion;
pub mod authorize;
pub mod body;
pub mod cli;
pub mod config;
pub mod consent;
pub mod crl_fetch;
pub mod demo;
pub mod enrollment;
pub mod forward;
pub mod gateway;
pub mod headers;
pub mod init;
pub mod login;
pub mod metrics;
pub mod mgmt;
pub mod password;
pub mod patient_admin;
pub mod refusal;
pub mod registry;
pub mod serve;
pub mod sessions;
pub mod terminals;
pub mod tls;
