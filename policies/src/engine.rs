//! The Cedar policy engine: loads a policy directory (`schema.cedarschema` + `*.cedar`),
//! validates it against the schema, and decides requests built from what the gateway knows
//! (principal, action, resource, context). No store access here: the caller supplies the
//! consent state and care team; only the two entities a request needs are built.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema,
    ValidationMode, Validator,
};
use serde::Deserialize;

/// The schema's file name inside a policy directory.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// The shipped default policy set, relative paths → contents. The gateway writes these out
/// when it initialises a data directory; `tests/*.toml` are the decision tables for them.
pub fn default_policy_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (SCHEMA_FILE, include_str!("../default/schema.cedarschema")),
        ("patients.cedar", include_str!("../default/patients.cedar")),
        ("roles.cedar", include_str!("../default/roles.cedar")),
        (
            "break_glass.cedar",
            include_str!("../default/break_glass.cedar"),
        ),
        ("admin.cedar", include_str!("../default/admin.cedar")),
        ("console.cedar", include_str!("../default/console.cedar")),
        (
            "tests/patients.toml",
            include_str!("../default/tests/patients.toml"),
        ),
        (
            "tests/roles.toml",
            include_str!("../default/tests/roles.toml"),
        ),
        (
            "tests/break_glass.toml",
            include_str!("../default/tests/break_glass.toml"),
        ),
        (
            "tests/admin.toml",
            include_str!("../default/tests/admin.toml"),
        ),
        (
            "tests/console.toml",
            include_str!("../default/tests/console.toml"),
        ),
    ]
}

/// The shipped default policy directory in the source tree (for tests and development; a
/// deployed gateway writes [`default_policy_files`] into its data directory instead).
pub fn default_policy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("default")
}

/// Why a policy directory could not be loaded. Every variant names the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: invalid schema: {message}")]
    Schema { file: String, message: String },
    #[error("{file}: syntax error: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: policy #{ordinal} has no @id(\"...\") annotation")]
    MissingId { file: String, ordinal: usize },
    #[error("{file}: policy id {id:?} is already used in {first}")]
    DuplicateId {
        file: String,
        id: String,
        first: String,
    },
    #[error("{dir}: no *.cedar policy files")]
    NoPolicies { dir: String },
    #[error("policy set does not match the schema:\n  {}", problems.join("\n  "))]
    Validation { problems: Vec<String> },
}

/// The actions the policies know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    View,
    Write,
    /// An assistant's entry, kept pending by the application until a physician confirms it.
    Enter,
    Confirm,
    BreakGlass,
    ManageUsers,
    ManageTerminals,
    /// Reading the audit log in the console: dashboard, search, a patient's access history.
    ReadAudit,
    /// Recording the finding on an emergency declaration, and ending a grant early.
    ReviewBreakGlass,
    /// The second person's approval (or refusal) of a declaration that waits for it.
    ApproveBreakGlass,
    /// Closing an anomaly finding: dismissing it, or suspending the person or the facility.
    ActOnFindings,
}

impl PolicyAction {
    pub const ALL: [PolicyAction; 11] = [
        PolicyAction::View,
        PolicyAction::Write,
        PolicyAction::Enter,
        PolicyAction::Confirm,
        PolicyAction::BreakGlass,
        PolicyAction::ManageUsers,
        PolicyAction::ManageTerminals,
        PolicyAction::ReadAudit,
        PolicyAction::ReviewBreakGlass,
        PolicyAction::ApproveBreakGlass,
        PolicyAction::ActOnFindings,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            PolicyAction::View => "view",
            PolicyAction::Write => "write",
            PolicyAction::Enter => "enter",
            PolicyAction::Confirm => "confirm",
            PolicyAction::BreakGlass => "break_glass",
            PolicyAction::ManageUsers => "manage_users",
            PolicyAction::ManageTerminals => "manage_terminals",
            PolicyAction::ReadAudit => "read_audit",
            PolicyAction::ReviewBreakGlass => "review_break_glass",
            PolicyAction::ApproveBreakGlass => "approve_break_glass",
            PolicyAction::ActOnFindings => "act_on_findings",
        }
    }
}

impl fmt::Display for PolicyAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A patient's consent state (R-PAT-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    Granted,
    Withdrawn,
    Suspended,
    None,
}

impl Consent {
    pub fn as_str(&self) -> &'static str {
        match self {
            Consent::Granted => "granted",
            Consent::Withdrawn => "withdrawn",
            Consent::Suspended => "suspended",
            Consent::None => "none",
        }
    }
}

/// How the user signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Hpki,
    Password,
}

impl AuthMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMethod::Hpki => "hpki",
            AuthMethod::Password => "password",
        }
    }
}

/// The signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub id: String,
    /// physician, dentist, pharmacist, nurse, care-manager, helper, clerk, or "".
    #[serde(default)]
    pub qualification: String,
    pub facility: String,
    /// facility-admin, secretariat, security-officer, …
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A patient, with what the consent registry and care team say about them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientResource {
    pub id: String,
    pub consent: Consent,
    #[serde(default)]
    pub care_team_users: Vec<String>,
    #[serde(default)]
    pub care_team_facilities: Vec<String>,
}

/// An administered object: a user account or a terminal of a facility, or the network's audit
/// log and its emergency declarations (the officers' console).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminKind {
    User,
    Terminal,
    Audit,
    BreakGlass,
}

impl AdminKind {
    /// "user" or "terminal", as in the schema's `AdminObject.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminKind::User => "user",
            AdminKind::Terminal => "terminal",
            AdminKind::Audit => "audit",
            AdminKind::BreakGlass => "break_glass",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminObject {
    pub id: String,
    pub kind: AdminKind,
    pub facility: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Patient(PatientResource),
    Admin(AdminObject),
}

/// The request context (see `RequestContext` in the schema).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestContext {
    pub auth_method: AuthMethod,
    pub patient_card_present: bool,
    pub consent_window: bool,
    pub break_glass: bool,
    /// The active grant's category allows writing too.
    #[serde(default)]
    pub break_glass_write: bool,
    pub tunnel: bool,
    /// Local hour of day, 0..=23.
    pub hour: u8,
    pub network_requires_card: bool,
    /// For `confirm`: the facility of the assistant whose entry is confirmed (R-ROLE-2).
    #[serde(default)]
    pub entry_facility: Option<String>,
}

impl Default for RequestContext {
    fn default() -> Self {
        RequestContext {
            auth_method: AuthMethod::Password,
            patient_card_present: false,
            consent_window: false,
            break_glass: false,
            break_glass_write: false,
            tunnel: true,
            hour: 12,
            network_requires_card: true,
            entry_facility: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    pub principal: Principal,
    pub action: PolicyAction,
    pub resource: Resource,
    pub context: RequestContext,
}

/// The outcome: `reasons` are the ids of the determining policies (the permits that allowed, or
/// the forbids that denied; empty when nothing permitted). `errors` are evaluation or request
/// errors; a request that could not be built is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reasons: Vec<String>,
    pub errors: Vec<String>,
}

impl Decision {
    fn error(message: String) -> Self {
        Decision {
            allowed: false,
            reasons: Vec::new(),
            errors: vec![message],
        }
    }
}

struct TypeNames {
    user: EntityTypeName,
    facility: EntityTypeName,
    patient: EntityTypeName,
    admin_object: EntityTypeName,
}

/// A loaded, validated policy set.
pub struct PolicyEngine {
    schema: Schema,
    policies: PolicySet,
    /// Per action, the policies whose action scope can match it (all of them when the schema
    /// declares action groups): evaluating only those halves the cost of a decision.
    by_action: HashMap<PolicyAction, PolicySet>,
    /// The schema's action entities, added to every request only when the schema declares
    /// action groups (so that `action in Action::"group"` works).
    action_entities: Vec<Entity>,
    authorizer: Authorizer,
    types: TypeNames,
    actions: HashMap<PolicyAction, EntityUid>,
    /// policy id → file it came from.
    origins: HashMap<String, String>,
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policies", &self.origins.len())
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Load `dir/schema.cedarschema` and every `dir/*.cedar` (sorted by name), and validate
    /// the set against the schema (strict mode). Every policy needs a unique `@id("...")`.
    pub fn load(dir: &Path) -> Result<PolicyEngine, PolicyError> {
        let schema_path = dir.join(SCHEMA_FILE);
        let schema_src = read(&schema_path)?;
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|source| PolicyError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| PolicyError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "cedar") && path.is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                files.push((name, read(&path)?));
            }
        }
        if files.is_empty() {
            return Err(PolicyError::NoPolicies {
                dir: dir.display().to_string(),
            });
        }
        files.sort();
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        Self::from_sources(&schema_src, &files)
    }

    /// Build from in-memory sources: the schema text and `(file name, policy text)` pairs.
    pub fn from_sources(
        schema_src: &str,
        files: &[(&str, &str)],
    ) -> Result<PolicyEngine, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(schema_src).map_err(|e| PolicyError::Schema {
                file: SCHEMA_FILE.to_string(),
                message: describe(&e, schema_src),
            })?;

        let mut policies = PolicySet::new();
        let mut origins: HashMap<String, String> = HashMap::new();
        let mut sources: HashMap<String, &str> = HashMap::new();
        for (file, src) in files {
            let parsed = PolicySet::from_str(src).map_err(|e| PolicyError::Parse {
                file: file.to_string(),
                message: describe(&e, src),
            })?;
            if parsed.templates().next().is_some() {
                return Err(PolicyError::Parse {
                    file: file.to_string(),
                    message: "policy templates (?principal / ?resource) are not supported"
                        .to_string(),
                });
            }
            let mut in_file: Vec<_> = parsed.policies().collect();
            // The parser names policies policy0, policy1, … in file order.
            in_file.sort_by_key(|p| ordinal(p.id()));
            for policy in in_file {
                let Some(id) = policy.annotation("id") else {
                    return Err(PolicyError::MissingId {
                        file: file.to_string(),
                        ordinal: ordinal(policy.id()) + 1,
                    });
                };
                if let Some(first) = origins.get(id) {
                    return Err(PolicyError::DuplicateId {
                        file: file.to_string(),
                        id: id.to_string(),
                        first: first.clone(),
                    });
                }
                origins.insert(id.to_string(), file.to_string());
                sources.insert(id.to_string(), src);
                policies
                    .add(policy.new_id(PolicyId::new(id)))
                    .map_err(|e| PolicyError::Parse {
                        file: file.to_string(),
                        message: e.to_string(),
                    })?;
            }
        }

        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        if !result.validation_passed() {
            let problems = result
                .validation_errors()
                .map(|e| {
                    let id = e.policy_id().to_string();
                    let file = origins.get(&id).map(String::as_str).unwrap_or("?");
                    let src = sources.get(&id).copied().unwrap_or("");
                    format!("{file}: policy {id:?}: {}", describe(e, src))
                })
                .collect();
            return Err(PolicyError::Validation { problems });
        }

        let ty = |s: &str| EntityTypeName::from_str(s).expect("static entity type name");
        let action_ty = ty("Action");
        let actions: HashMap<PolicyAction, EntityUid> = PolicyAction::ALL
            .iter()
            .map(|a| {
                (
                    *a,
                    EntityUid::from_type_name_and_id(action_ty.clone(), EntityId::new(a.as_str())),
                )
            })
            .collect();
        let schema_actions = schema.action_entities().map_err(|e| PolicyError::Schema {
            file: SCHEMA_FILE.to_string(),
            message: e.to_string(),
        })?;
        let has_groups = schema_actions.iter().any(|e| {
            schema_actions
                .ancestors(&e.uid())
                .is_some_and(|mut a| a.next().is_some())
        });
        let action_entities: Vec<Entity> = if has_groups {
            schema_actions.iter().cloned().collect()
        } else {
            Vec::new()
        };
        let by_action = PolicyAction::ALL
            .iter()
            .map(|a| {
                let uid: &EntityUid = &actions[a];
                let mut set = PolicySet::new();
                for p in policies.policies() {
                    let applies = has_groups
                        || match p.action_constraint() {
                            ActionConstraint::Any => true,
                            ActionConstraint::Eq(u) => &u == uid,
                            ActionConstraint::In(us) => us.contains(uid),
                        };
                    if applies {
                        set.add(p.clone()).expect("ids are unique");
                    }
                }
                (*a, set)
            })
            .collect();
        let engine = PolicyEngine {
            schema,
            by_action,
            action_entities,
            policies,
            authorizer: Authorizer::new(),
            types: TypeNames {
                user: ty("User"),
                facility: ty("Facility"),
                patient: ty("Patient"),
                admin_object: ty("AdminObject"),
            },
            actions,
            origins,
        };
        engine.check_shapes()?;
        Ok(engine)
    }

    /// The loaded policy ids with the file each came from, sorted by id.
    pub fn policy_ids(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .origins
            .iter()
            .map(|(id, f)| (id.clone(), f.clone()))
            .collect();
        v.sort();
        v
    }

    /// Decide one request. Never panics; a request that does not fit the schema is denied with
    /// the problem in `errors`.
    pub fn decide(&self, request: &DecisionRequest) -> Decision {
        // The request's shape was checked against the schema once, at load (`check_shapes`);
        // per-request schema validation would roughly double the cost of a decision.
        match self.build(request, None) {
            Ok((req, entities)) => {
                let policies = self
                    .by_action
                    .get(&request.action)
                    .unwrap_or(&self.policies);
                let response = self.authorizer.is_authorized(&req, policies, &entities);
                let mut reasons: Vec<String> = response
                    .diagnostics()
                    .reason()
                    .map(|id| id.to_string())
                    .collect();
                reasons.sort();
                Decision {
                    allowed: response.decision() == CedarDecision::Allow,
                    reasons,
                    errors: response
                        .diagnostics()
                        .errors()
                        .map(|e| e.to_string())
                        .collect(),
                }
            }
            Err(message) => Decision::error(message),
        }
    }

    fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    /// Check that the entities and context this engine builds conform to the loaded schema
    /// (which a deployment may have edited), for every action, with and without the optional
    /// context attribute, so that `decide` can skip per-request schema validation.
    fn check_shapes(&self) -> Result<(), PolicyError> {
        for action in PolicyAction::ALL {
            let resource = match action {
                PolicyAction::ManageUsers
                | PolicyAction::ManageTerminals
                | PolicyAction::ReadAudit
                | PolicyAction::ReviewBreakGlass
                | PolicyAction::ApproveBreakGlass
                | PolicyAction::ActOnFindings => Resource::Admin(AdminObject {
                    id: "probe".into(),
                    kind: AdminKind::User,
                    facility: "probe".into(),
                }),
                _ => Resource::Patient(PatientResource {
                    id: "probe".into(),
                    consent: Consent::Granted,
                    care_team_users: vec!["probe".into()],
                    care_team_facilities: vec!["probe".into()],
                }),
            };
            for entry_facility in [None, Some("probe".to_string())] {
                let request = DecisionRequest {
                    principal: Principal {
                        id: "probe".into(),
                        qualification: String::new(),
                        facility: "probe".into(),
                        roles: vec!["probe".into()],
                    },
                    action,
                    resource: resource.clone(),
                    context: RequestContext {
                        entry_facility,
                        ..RequestContext::default()
                    },
                };
                self.build(&request, Some(&self.schema))
                    .map_err(|message| PolicyError::Schema {
                        file: SCHEMA_FILE.to_string(),
                        message: format!(
                            "does not fit the requests the gateway makes ({action}): {message}"
                        ),
                    })?;
            }
        }
        Ok(())
    }

    fn build(
        &self,
        request: &DecisionRequest,
        schema: Option<&Schema>,
    ) -> Result<(Request, Entities), String> {
        let t = &self.types;
        let p = &request.principal;
        let principal_uid = self.uid(&t.user, &p.id);
        let principal = Entity::new(
            principal_uid.clone(),
            HashMap::from([
                (
                    "qualification".to_string(),
                    RestrictedExpression::new_string(p.qualification.clone()),
                ),
                (
                    "facility".to_string(),
                    RestrictedExpression::new_entity_uid(self.uid(&t.facility, &p.facility)),
                ),
                (
                    "roles".to_string(),
                    RestrictedExpression::new_set(
                        p.roles
                            .iter()
                            .map(|r| RestrictedExpression::new_string(r.clone())),
                    ),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(|e| format!("principal: {e}"))?;

        let (resource_uid, resource) = match &request.resource {
            Resource::Patient(pt) => {
                let uid = self.uid(&t.patient, &pt.id);
                let users = pt
                    .care_team_users
                    .iter()
                    .map(|u| RestrictedExpression::new_entity_uid(self.uid(&t.user, u)));
                let facilities = pt
                    .care_team_facilities
                    .iter()
                    .map(|f| RestrictedExpression::new_entity_uid(self.uid(&t.facility, f)));
                let entity = Entity::new(
                    uid.clone(),
                    HashMap::from([
                        (
                            "consent".to_string(),
                            RestrictedExpression::new_string(pt.consent.as_str().to_string()),
                        ),
                        (
                            "care_team_users".to_string(),
                            RestrictedExpression::new_set(users),
                        ),
                        (
                            "care_team_facilities".to_string(),
                            RestrictedExpression::new_set(facilities),
                        ),
                    ]),
                    HashSet::new(),
                )
                .map_err(|e| format!("resource: {e}"))?;
                (uid, entity)
            }
            Resource::Admin(obj) => {
                let uid = self.uid(&t.admin_object, &obj.id);
                let kind = obj.kind.as_str();
                let entity = Entity::new(
                    uid.clone(),
                    HashMap::from([
                        (
                            "kind".to_string(),
                            RestrictedExpression::new_string(kind.to_string()),
                        ),
                        (
                            "facility".to_string(),
                            RestrictedExpression::new_entity_uid(
                                self.uid(&t.facility, &obj.facility),
                            ),
                        ),
                    ]),
                    HashSet::new(),
                )
                .map_err(|e| format!("resource: {e}"))?;
                (uid, entity)
            }
        };

        let c = &request.context;
        let mut pairs = vec![
            (
                "auth_method".to_string(),
                RestrictedExpression::new_string(c.auth_method.as_str().to_string()),
            ),
            (
                "patient_card_present".to_string(),
                RestrictedExpression::new_bool(c.patient_card_present),
            ),
            (
                "consent_window".to_string(),
                RestrictedExpression::new_bool(c.consent_window),
            ),
            (
                "break_glass".to_string(),
                RestrictedExpression::new_bool(c.break_glass),
            ),
            (
                "break_glass_write".to_string(),
                RestrictedExpression::new_bool(c.break_glass_write),
            ),
            (
                "tunnel".to_string(),
                RestrictedExpression::new_bool(c.tunnel),
            ),
            (
                "hour".to_string(),
                RestrictedExpression::new_long(i64::from(c.hour)),
            ),
            (
                "network_requires_card".to_string(),
                RestrictedExpression::new_bool(c.network_requires_card),
            ),
        ];
        if let Some(f) = &c.entry_facility {
            pairs.push((
                "entry_facility".to_string(),
                RestrictedExpression::new_entity_uid(self.uid(&t.facility, f)),
            ));
        }
        let context = Context::from_pairs(pairs).map_err(|e| format!("context: {e}"))?;

        let action = self.actions[&request.action].clone();
        let req = Request::new(principal_uid, action, resource_uid, context, schema)
            .map_err(|e| format!("request: {e}"))?;
        let entities = Entities::from_entities(
            [principal, resource]
                .into_iter()
                // With a schema, `from_entities` adds the action entities itself.
                .chain(
                    self.action_entities
                        .iter()
                        .filter(|_| schema.is_none())
                        .cloned(),
                ),
            schema,
        )
        .map_err(|e| format!("entities: {e}"))?;
        Ok((req, entities))
    }
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn ordinal(id: &PolicyId) -> usize {
    id.to_string()
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX - 1)
}

/// A one-line description of a Cedar diagnostic: its message, where (line:column of its first
/// label in `src`), and its help, followed by related diagnostics.
fn describe(diag: &dyn miette::Diagnostic, src: &str) -> String {
    let mut out = diag.to_string();
    if let Some(mut labels) = diag.labels()
        && let Some(label) = labels.next()
    {
        let (line, col) = line_col(src, label.offset());
        out = format!("line {line}, column {col}: {out}");
    }
    if let Some(help) = diag.help() {
        out.push_str(&format!(" ({help})"));
    }
    if let Some(related) = diag.related() {
        for r in related {
            out.push_str("; ");
            out.push_str(&describe(r, src));
        }
    }
    out
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
