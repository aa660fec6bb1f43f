//! Sekisho, the access gateway: the `sekisho` binary and the library it is made of.
//!
//! The request path is [`gateway`]: accept → identify → session → route → authorize → audit
//! → forward → outcome, one file per phase, with [`signin`] and [`consent`] as the gateway's
//! own endpoints, [`policy`] consulted by authorize, and [`upstream`] behind forward.
//! [`serve`] assembles a gateway from a data dir and keeps it current; [`enrollment`] and
//! [`mgmt`] are the other two listeners; [`notify`] tells security officers (webhook, e-mail)
//! through a durable outbox; [`cli`] is the secretariat's command line. The store,
//! the audit log, the WireGuard endpoint, the CA, the route map and policies, and the ids and
//! refusal reasons shared with the terminal agent are crates of their own
//! (`docs/architecture.md`).

pub mod assertion;
pub mod backup;
pub mod body;
pub mod breakglass;
pub mod cli;
pub mod config;
pub mod consent;
pub mod console;
pub mod demo;
pub mod endpoint;
pub mod enrollment;
pub mod facilities;
pub mod file_stamps;
pub mod gateway;
pub mod headers;
pub mod html;
pub mod init;
pub mod metrics;
pub mod mgmt;
pub mod notices;
pub mod notify;
pub mod origin;
pub mod oversight;
pub mod password;
pub mod patients;
pub mod policy;
pub mod registry;
pub mod serve;
pub mod sessions;
pub mod signin;
pub mod terminals;
pub mod throttle;
pub mod tls;
pub mod upstream;
