//! `[audit.retention]`: how long each kind of audit record keeps its body (R-OPS-5: five years,
//! then it may be deleted), and when the gateway prunes on its own (`docs/audit.md`,
//! "Retention").
//!
//! ```toml
//! [audit.retention]
//! default_days = 1827        # five years, leap days counted
//! daily_at = "03:30"         # Japan time; "" = only `sekisho audit prune` prunes
//! [audit.retention.days]     # per kind, by the records' event names
//! break_glass = 3653
//! ```

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, bail};
use sekisho_audit::Event;
use sekisho_audit::retention::{DEFAULT_DAYS, Retention};
use serde::{Deserialize, Serialize};

/// No kind is kept less than a year: the officers' reviews and patients' disclosure requests
/// look back months, and a shorter value is far more likely a slip (months for days) than meant.
pub const MIN_DAYS: u32 = 365;
/// Emergency accesses (their review is the evidence R-BG-3 asks for) and operation records
/// (the networks' 運用状況記録: maintenance, backups, configuration, and the prunes themselves)
/// are kept at least the five years.
pub const FLOOR_KINDS: [Event; 2] = [Event::BreakGlass, Event::Operation];

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days a record's body is kept, for every kind not named in `days`.
    pub default_days: u32,
    /// Per kind (`request`, `outcome`, `tls`, `connection`, `auth`, `consent`, `enrollment`,
    /// `registry`, `report`, `break_glass`, `operation`): days.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub days: BTreeMap<String, u32>,
    /// When the gateway prunes each day, Japan time `HH:MM`; empty: never on its own. With
    /// replicas, one of them does it (a lease in the store).
    pub daily_at: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            default_days: DEFAULT_DAYS,
            days: BTreeMap::new(),
            daily_at: "03:30".into(),
        }
    }
}

impl RetentionConfig {
    /// The retention per kind, checked: known kinds only, and the floors above.
    pub fn retention(&self) -> Result<Retention> {
        let mut days = HashMap::new();
        for (name, d) in &self.days {
            let Some(e) = Event::ALL.iter().find(|e| e.as_str() == name) else {
                let known: Vec<&str> = Event::ALL.iter().map(|e| e.as_str()).collect();
                bail!(
                    "audit.retention.days: unknown record kind {name:?} (known: {})",
                    known.join(", ")
                );
            };
            days.insert(*e, *d);
        }
        let r = Retention {
            default_days: self.default_days,
            days,
        };
        for e in Event::ALL {
            let d = r.days(e);
            let floor = if FLOOR_KINDS.contains(&e) {
                DEFAULT_DAYS
            } else {
                MIN_DAYS
            };
            if d < floor {
                bail!(
                    "audit.retention: {} records would be kept {d} days; at least {floor} (docs/audit.md, \"Retention\")",
                    e.as_str()
                );
            }
        }
        Ok(r)
    }

    /// `daily_at` as minutes after midnight (JST); `None`: no scheduled prune.
    pub fn daily_minute(&self) -> Result<Option<u32>> {
        let s = self.daily_at.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let parsed = s.split_once(':').and_then(|(h, m)| {
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && s.len() == 5).then_some(h * 60 + m)
        });
        match parsed {
            Some(m) => Ok(Some(m)),
            None => bail!("audit.retention.daily_at must be HH:MM (Japan time), or \"\" for none"),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.retention()?;
        self.daily_minute()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<RetentionConfig> {
        #[derive(Deserialize)]
        struct Wrap {
            retention: RetentionConfig,
        }
        let w: Wrap = toml::from_str(toml_text)?;
        w.retention.validate()?;
        Ok(w.retention)
    }

    #[test]
    fn defaults_keep_five_years_and_prune_at_night() {
        let c = RetentionConfig::default();
        let r = c.retention().unwrap();
        assert_eq!(r.days(Event::Request), 1827);
        assert_eq!(c.daily_minute().unwrap(), Some(3 * 60 + 30));
    }

    #[test]
    fn per_kind_days_by_event_name() {
        let c = parse(
            "[retention]\ndefault_days = 2000\ndaily_at = \"\"\n[retention.days]\nrequest = 400\nbreak_glass = 3653\n",
        )
        .unwrap();
        let r = c.retention().unwrap();
        assert_eq!(r.days(Event::Request), 400);
        assert_eq!(r.days(Event::BreakGlass), 3653);
        assert_eq!(r.days(Event::Outcome), 2000);
        assert_eq!(c.daily_minute().unwrap(), None);
    }

    #[test]
    fn unknown_kinds_short_retention_and_bad_times_are_refused() {
        let e = parse("[retention.days]\nrequests = 2000\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown record kind \"requests\""),
            "{e:#}"
        );
        let e = parse("[retention.days]\nbreak_glass = 1000\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("break_glass records would be kept 1000 days"),
            "{e:#}"
        );
        let e = parse("[retention]\ndefault_days = 90\n").unwrap_err();
        assert!(format!("{e:#}").contains("at least 365"), "{e:#}");
        // The default applies to emergency records too: below five years it is refused.
        let e = parse("[retention]\ndefault_days = 400\n").unwrap_err();
        assert!(format!("{e:#}").contains("break_glass records"), "{e:#}");
        assert!(parse("[retention]\ndefault_days = 400\n[retention.days]\nbreak_glass = 1827\noperation = 1827\n").is_ok());
        assert!(parse("[retention]\ndaily_at = \"3:30\"\n").is_err());
        assert!(parse("[retention]\ndaily_at = \"24:00\"\n").is_err());
        assert!(parse("[retention]\ndefault_days_x = 1\n").is_err());
    }
}
