//! Sekisho, the access gateway. The request path (DESIGN.md): `gateway` (listener, identify,
//! route, decide) → `audit` (durable append) → `forward` (upstream) with an `assertion`.

pub mod assertion;
pub mod body;
pub mod cli;
pub mod config;
pub mod consent;
pub mod demo;
pub mod endpoint;
pub mod enrollment;
pub mod gateway;
pub mod headers;
pub mod html;
pub mod init;
pub mod metrics;
pub mod mgmt;
pub mod password;
pub mod policy;
pub mod registry;
pub mod serve;
pub mod sessions;
pub mod signin;
pub mod terminals;
pub mod tls;
pub mod upstream;
