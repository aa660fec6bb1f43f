//! Decision tables: named principals, patients, admin objects and a default context, then rows
//! `principal / action / resource / context overrides → expect allow|deny` (optionally with
//! the expected determining policy ids). `sekisho policy test` and the crate's tests run them.
//!
//! ```toml
//! [context]                       # defaults for every row (unset fields: RequestContext::default())
//! auth_method = "password"
//! network_requires_card = true
//!
//! [principals.dr-sato]
//! qualification = "physician"
//! facility = "clinic-a"
//!
//! [patients.taro]
//! consent = "granted"
//! care_team_users = ["dr-sato"]
//!
//! [admin_objects.terminal-a1]
//! kind = "terminal"
//! facility = "clinic-a"
//!
//! [[row]]
//! name = "physician in the care team views with the patient card"
//! principal = "dr-sato"
//! action = "view"
//! resource = "taro"
//! context = { patient_card_present = true }
//! expect = "allow"
//! reasons = ["role1-view-qualified"]   # optional
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::engine::{
    AdminKind, AdminObject, AuthMethod, Consent, DecisionRequest, PatientResource, PolicyAction,
    PolicyEngine, Principal, RequestContext, Resource,
};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Format { file: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Allow,
    Deny,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    pub auth_method: Option<AuthMethod>,
    pub patient_card_present: Option<bool>,
    pub consent_window: Option<bool>,
    pub break_glass: Option<bool>,
    pub break_glass_write: Option<bool>,
    pub tunnel: Option<bool>,
    pub hour: Option<u8>,
    pub network_requires_card: Option<bool>,
    pub entry_facility: Option<String>,
}

impl ContextSpec {
    fn apply(&self, c: &mut RequestContext) {
        if let Some(v) = self.auth_method {
            c.auth_method = v;
        }
        if let Some(v) = self.patient_card_present {
            c.patient_card_present = v;
        }
        if let Some(v) = self.consent_window {
            c.consent_window = v;
        }
        if let Some(v) = self.break_glass {
            c.break_glass = v;
        }
        if let Some(v) = self.break_glass_write {
            c.break_glass_write = v;
        }
        if let Some(v) = self.tunnel {
            c.tunnel = v;
        }
        if let Some(v) = self.hour {
            c.hour = v;
        }
        if let Some(v) = self.network_requires_card {
            c.network_requires_card = v;
        }
        if let Some(v) = &self.entry_facility {
            c.entry_facility = Some(v.clone());
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSpec {
    #[serde(default)]
    pub qualification: String,
    pub facility: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientSpec {
    pub consent: Consent,
    #[serde(default)]
    pub care_team_users: Vec<String>,
    #[serde(default)]
    pub care_team_facilities: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminObjectSpec {
    pub kind: AdminKind,
    pub facility: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub name: String,
    pub principal: String,
    pub action: PolicyAction,
    pub resource: String,
    #[serde(default)]
    pub context: ContextSpec,
    pub expect: Expect,
    /// When given, the determining policy ids must be exactly these (order ignored).
    #[serde(default)]
    pub reasons: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionTable {
    #[serde(default)]
    pub context: ContextSpec,
    #[serde(default)]
    pub principals: BTreeMap<String, PrincipalSpec>,
    #[serde(default)]
    pub patients: BTreeMap<String, PatientSpec>,
    #[serde(default)]
    pub admin_objects: BTreeMap<String, AdminObjectSpec>,
    #[serde(default)]
    pub row: Vec<Row>,
    /// The file it was read from (for reports); not part of the format.
    #[serde(skip)]
    pub source: String,
}

impl DecisionTable {
    /// Parse a table; `name` is used in messages. Rows must name known principals and
    /// resources.
    pub fn from_toml_str(name: &str, text: &str) -> Result<DecisionTable, TableError> {
        let mut table: DecisionTable = toml::from_str(text).map_err(|e| TableError::Format {
            file: name.to_string(),
            message: e.to_string(),
        })?;
        table.source = name.to_string();
        for row in &table.row {
            let problem = if !table.principals.contains_key(&row.principal) {
                Some(format!("unknown principal {:?}", row.principal))
            } else {
                match (
                    table.patients.contains_key(&row.resource),
                    table.admin_objects.contains_key(&row.resource),
                ) {
                    (false, false) => Some(format!("unknown resource {:?}", row.resource)),
                    (true, true) => Some(format!(
                        "resource {:?} is both a patient and an admin object",
                        row.resource
                    )),
                    _ => None,
                }
            };
            if let Some(problem) = problem {
                return Err(TableError::Format {
                    file: name.to_string(),
                    message: format!("row {:?}: {problem}", row.name),
                });
            }
        }
        Ok(table)
    }

    pub fn load(path: &Path) -> Result<DecisionTable, TableError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TableError::Io {
            file: name.clone(),
            source,
        })?;
        Self::from_toml_str(&name, &text)
    }

    /// The request a row describes.
    pub fn request(&self, row: &Row) -> DecisionRequest {
        let p = &self.principals[&row.principal];
        let resource = match self.patients.get(&row.resource) {
            Some(pt) => Resource::Patient(PatientResource {
                id: row.resource.clone(),
                consent: pt.consent,
                care_team_users: pt.care_team_users.clone(),
                care_team_facilities: pt.care_team_facilities.clone(),
            }),
            None => {
                let a = &self.admin_objects[&row.resource];
                Resource::Admin(AdminObject {
                    id: row.resource.clone(),
                    kind: a.kind,
                    facility: a.facility.clone(),
                })
            }
        };
        let mut context = RequestContext::default();
        self.context.apply(&mut context);
        row.context.apply(&mut context);
        DecisionRequest {
            principal: Principal {
                id: row.principal.clone(),
                qualification: p.qualification.clone(),
                facility: p.facility.clone(),
                roles: p.roles.clone(),
            },
            action: row.action,
            resource,
            context,
        }
    }
}

/// A row whose decision differed from the expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFailure {
    pub table: String,
    pub row: String,
    pub expected: Expect,
    pub expected_reasons: Option<Vec<String>>,
    pub allowed: bool,
    pub reasons: Vec<String>,
    pub errors: Vec<String>,
}

impl fmt::Display for RowFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: row {:?}: expected {}",
            self.table, self.row, self.expected
        )?;
        if let Some(r) = &self.expected_reasons {
            write!(f, " by {r:?}")?;
        }
        write!(
            f,
            ", got {} by {:?}",
            if self.allowed { "allow" } else { "deny" },
            self.reasons
        )?;
        if !self.errors.is_empty() {
            write!(f, " (errors: {})", self.errors.join("; "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableReport {
    pub rows: usize,
    pub passed: usize,
    pub failures: Vec<RowFailure>,
}

impl TableReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn merge(&mut self, other: TableReport) {
        self.rows += other.rows;
        self.passed += other.passed;
        self.failures.extend(other.failures);
    }
}

impl fmt::Display for TableReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} rows, {} passed, {} failed",
            self.rows,
            self.passed,
            self.failures.len()
        )?;
        for failure in &self.failures {
            writeln!(f, "  FAIL {failure}")?;
        }
        Ok(())
    }
}

/// Run every row of `table` through `engine`. A row fails when the decision differs, when it
/// names reasons and the determining policies differ, or when evaluation reported errors.
pub fn run_table(engine: &PolicyEngine, table: &DecisionTable) -> TableReport {
    let mut report = TableReport::default();
    for row in &table.row {
        report.rows += 1;
        let decision = engine.decide(&table.request(row));
        let decision_ok = decision.allowed == (row.expect == Expect::Allow);
        let reasons_ok = row.reasons.as_ref().is_none_or(|want| {
            let mut want = want.clone();
            want.sort();
            want == decision.reasons
        });
        if decision_ok && reasons_ok && decision.errors.is_empty() {
            report.passed += 1;
        } else {
            report.failures.push(RowFailure {
                table: table.source.clone(),
                row: row.name.clone(),
                expected: row.expect,
                expected_reasons: row.reasons.clone(),
                allowed: decision.allowed,
                reasons: decision.reasons,
                errors: decision.errors,
            });
        }
    }
    report
}

/// Load and run every `*.toml` table in `dir` (sorted by name).
pub fn run_table_dir(engine: &PolicyEngine, dir: &Path) -> Result<TableReport, TableError> {
    let io = |source| TableError::Io {
        file: dir.display().to_string(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut report = TableReport::default();
    for path in paths {
        report.merge(run_table(engine, &DecisionTable::load(&path)?));
    }
    Ok(report)
}
