//! The people who sign in, as the secretariat (or a facility's administrator) manages them —
//! the rules and store writes the console's pages and `sekisho user` share: who may be added,
//! temporary passwords, suspension, recovery from a lockout (R-ACCT-1, -5, -6).

use anyhow::{Result, bail};
use sekisho_store::Store;
use sekisho_store::lockouts::{self, Scope};
use sekisho_store::users;

/// The roles a person may have.
pub const ROLES: &[&str] = &[
    "physician",
    "dentist",
    "pharmacist",
    "nurse",
    "care-manager",
    "helper",
    "clerk",
    "facility-admin",
    "secretariat",
    "security-officer",
];

/// Someone to register.
pub struct NewPerson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub facility: &'a str,
    pub roles: &'a [String],
    /// A password profile: a temporary password is made, to be changed at the first sign-in.
    pub profile: Option<crate::password::Profile>,
    pub hpki_issuer: Option<&'a str>,
    pub hpki_serial: Option<&'a str>,
    pub hpki_holder_id: Option<&'a str>,
}

/// What is wrong with a registration, in words a clerk can act on; `Ok` when nothing is.
pub fn check(id: &str, name: &str, facility: &str, roles: &[String]) -> Result<()> {
    if !crate::password::valid_user_id(id) {
        bail!("the ID must be 10 or more letters and digits (the network's ID rule)");
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        bail!("the name must be 1 to 64 characters without control characters");
    }
    sekisho_ca::TerminalId::new(facility, "x")
        .map_err(|_| anyhow::anyhow!("the facility must be letters, digits, '.', '_' or '-'"))?;
    if roles.is_empty() {
        bail!("give at least one role ({})", ROLES.join(", "));
    }
    if let Some(r) = roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
        bail!("unknown role {r:?} (known: {})", ROLES.join(", "));
    }
    Ok(())
}

/// Registers `p` (checked first); returns the temporary password when a profile was given.
pub async fn add(store: &Store, p: &NewPerson<'_>) -> Result<Option<String>> {
    check(p.id, p.name, p.facility, p.roles)?;
    users::insert(
        store,
        &users::NewUser {
            user_id: p.id,
            name: p.name.trim(),
            facility: p.facility,
            roles: p.roles,
            hpki_issuer: p.hpki_issuer,
            hpki_serial: p.hpki_serial,
            hpki_holder_id: p.hpki_holder_id,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot add {} (already registered?): {e}", p.id))?;
    match p.profile {
        Some(profile) => Ok(Some(set_temporary_password(store, p.id, profile).await?)),
        None => Ok(None),
    }
}

/// A new temporary password, changed at the next sign-in in every profile: the secretariat
/// has seen it. (NIST 800-63B's "no forced changes" is about periodic changes, not a secret
/// someone else knows.)
pub async fn set_temporary_password(
    store: &Store,
    id: &str,
    profile: crate::password::Profile,
) -> Result<String> {
    let t = crate::password::temporary();
    let h = crate::password::hash(&t)?;
    if !users::set_password(store, id, &h, profile.as_str(), true).await? {
        bail!("no user {id:?}");
    }
    Ok(t)
}

/// Suspends or resumes; suspension ends the person's sessions on every gateway.
pub async fn set_suspended(store: &Store, id: &str, suspend: bool) -> Result<()> {
    let Some(u) = users::get(store, id).await? else {
        bail!("no user {id:?}");
    };
    if u.suspended == suspend {
        bail!(
            "user {id} is already {}",
            if suspend { "suspended" } else { "active" }
        );
    }
    users::set_suspended(store, id, suspend).await?;
    Ok(())
}

/// Recovery after a lockout: a password that may have been guessed at is replaced — the
/// change is required before the lock is lifted, so a failure in between leaves the account
/// locked, never open with the old password.
pub async fn unlock(store: &Store, id: &str) -> Result<()> {
    if lockouts::get(store, Scope::Account, id)
        .await?
        .locked_at
        .is_none()
    {
        bail!("user {id} is not locked");
    }
    users::require_password_change(store, id).await?;
    if !lockouts::unlock(store, Scope::Account, id).await? {
        bail!("user {id} is not locked");
    }
    Ok(())
}
