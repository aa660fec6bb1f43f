//! `[break_glass]` in `sekisho.toml`: the reason categories a network accepts for emergency
//! access and what each allows, and the desk's limits.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakGlassConfig {
    /// How long a declaration may wait for a patient and the card's signature.
    pub draft_minutes: u32,
    /// A required follow-up (the patient's permission afterwards) missing this long after the
    /// declaration is flagged.
    pub follow_up_hours: u32,
    /// Most patients the search by name returns.
    pub search_limit: u32,
    /// Declarations unreviewed this many days after they were made are flagged and the
    /// officers are told again.
    pub unreviewed_days: u32,
    #[serde(rename = "category")]
    pub categories: Vec<Category>,
}

/// A reason category and its rules.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// The code in declarations, records and assertions (`[a-z0-9_]`).
    pub code: String,
    pub name_ja: String,
    pub name_en: String,
    /// The time box: never open-ended (1 to 72 hours).
    #[serde(default = "default_hours")]
    pub hours: u32,
    /// Writing is allowed under the grant, not only viewing.
    #[serde(default)]
    pub allows_write: bool,
    /// The patient's permission must be recorded afterwards (004 (ウ)).
    #[serde(default)]
    pub follow_up: bool,
    /// A second person must approve before the grant starts (R-PAT-4: child protection).
    #[serde(default)]
    pub approval: bool,
    /// The grant ends when the session it was declared in ends (card removed, sign-out).
    #[serde(default)]
    pub ends_with_session: bool,
}

fn default_hours() -> u32 {
    4
}

impl Default for BreakGlassConfig {
    fn default() -> Self {
        let category = |code: &str, ja: &str, en: &str| Category {
            code: code.into(),
            name_ja: ja.into(),
            name_en: en.into(),
            hours: 4,
            allows_write: false,
            follow_up: false,
            approval: false,
            ends_with_session: false,
        };
        BreakGlassConfig {
            draft_minutes: 15,
            follow_up_hours: 72,
            search_limit: 10,
            unreviewed_days: 7,
            categories: vec![
                // 004 8.2(4)(イ)(ウ): card lost or forgotten, the patient's spoken permission;
                // the signature is obtained afterwards.
                Category {
                    follow_up: true,
                    ..category(
                        "card_lost",
                        "患者カードの紛失・忘れ（患者さんの口頭での同意あり）",
                        "Patient card lost or forgotten (the patient agreed verbally)",
                    )
                },
                // 004 8.2(4)(エ), R-BG-2: the patient cannot consent.
                Category {
                    follow_up: true,
                    ..category(
                        "unconscious",
                        "救急時：意識障害などで患者さんの同意を得られない",
                        "Emergency: the patient cannot consent (e.g. unconscious)",
                    )
                },
                category("disaster", "災害時", "Disaster"),
                // R-PAT-4: only once the operator has recognised it.
                Category {
                    approval: true,
                    ..category(
                        "child_protection",
                        "児童虐待・要保護児童への対応（運営者の承認が必要）",
                        "Child protection or abuse (needs the operator's approval)",
                    )
                },
            ],
        }
    }
}

impl BreakGlassConfig {
    pub fn category(&self, code: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.code == code)
    }

    pub fn validate(&self) -> Result<()> {
        if self.categories.is_empty() {
            bail!("break_glass: at least one [[break_glass.category]] is needed");
        }
        for (i, c) in self.categories.iter().enumerate() {
            if c.code.is_empty()
                || c.code.len() > 32
                || !c
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                bail!(
                    "break_glass.category code {:?}: use 1-32 of a-z 0-9 _",
                    c.code
                );
            }
            if self.categories[..i].iter().any(|o| o.code == c.code) {
                bail!("break_glass.category {:?} appears twice", c.code);
            }
            if !(1..=72).contains(&c.hours) {
                bail!(
                    "break_glass.category {:?}: hours must be 1 to 72 (a grant is never open-ended)",
                    c.code
                );
            }
            if c.name_ja.is_empty() || c.name_en.is_empty() {
                bail!(
                    "break_glass.category {:?}: name_ja and name_en are needed",
                    c.code
                );
            }
        }
        if !(1..=120).contains(&self.draft_minutes) || self.search_limit == 0 {
            bail!("break_glass: draft_minutes must be 1 to 120 and search_limit at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_the_seeds_and_bad_categories_are_refused() {
        let c = BreakGlassConfig::default();
        c.validate().unwrap();
        assert!(c.category("card_lost").unwrap().follow_up);
        assert!(c.category("child_protection").unwrap().approval);
        assert!(c.categories.iter().all(|c| c.hours == 4 && !c.allows_write));
        for bad in [
            Category {
                hours: 0,
                ..c.categories[0].clone()
            },
            Category {
                hours: 100,
                ..c.categories[0].clone()
            },
            Category {
                code: "Bad Code".into(),
                ..c.categories[0].clone()
            },
        ] {
            let mut d = BreakGlassConfig::default();
            d.categories.push(bad);
            assert!(d.validate().is_err());
        }
        let mut twice = BreakGlassConfig::default();
        twice.categories.push(twice.categories[0].clone());
        assert!(twice.validate().is_err());
    }
}
