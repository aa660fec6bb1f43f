//! The secretariat's patient pages: a patient's care team (who may see them, R-PAT-3) — add
//! and remove a person or a whole facility — and their patient IC cards (R-PAT-2) — list and
//! revoke a lost one (its consent windows close at once). The store writes are `sekisho
//! careteam` and `sekisho patient card revoke`'s, on record first. A care team is the network's,
//! not a facility's: only someone who manages people of every facility (the secretariat,
//! `admin.cedar`) changes one. Issuing a card writes its key for the card's personalisation
//! and stays at the command line.

use std::fmt::Write;

use http::Response;
use sekisho_audit::AuditRecord;
use sekisho_protocol::Reason;
use sekisho_store::consent as cards;
use sekisho_store::patients;

use super::layout::q;
use super::{Console, PATIENTS, Visit, param};
use crate::body::Body;
use crate::endpoint::field;
use crate::html::escape;
use crate::oversight::{NotMade, jst, recorded};

/// The facility the policy set is asked about for the network's patients: none belongs to
/// it (`*` is in no facility id), so only someone who manages people of every facility (the
/// secretariat) passes.
pub(super) const NETWORK: &str = "*network*";

impl Console {
    pub(super) async fn patients_page(
        &self,
        v: &Visit<'_>,
        query: &[(String, String)],
    ) -> Response<Body> {
        let patient = param(query, "patient");
        let mut out = format!(
            r#"<form method="get" action="{PATIENTS}" class="filters" id="find-patient"><label>患者ID / patient id <input name="patient" value="{}" required maxlength="64" autocomplete="off"></label><div><button type="submit">表示 / Show</button></div></form>"#,
            escape(patient.unwrap_or(""))
        );
        if let Some(done) = param(query, "done").and_then(done_text) {
            write!(out, r#"<p class="done" id="done">{done}</p>"#).ok();
        }
        let Some(patient) = patient else {
            return v.page(
                "患者の参加者とカード",
                "Care teams and cards",
                "patients",
                &out,
            );
        };
        if !sekisho_protocol::is_valid_patient_id(patient) {
            out.push_str(r#"<p class="msg">患者IDの形式ではありません / Not a patient id.</p>"#);
            return v.page(
                "患者の参加者とカード",
                "Care teams and cards",
                "patients",
                &out,
            );
        }
        let found = async {
            anyhow::Ok((
                patients::facts(&self.store, patient).await?,
                patients::care_team(&self.store, patient).await?,
                cards::cards(&self.store, Some(patient)).await?,
            ))
        }
        .await;
        let (facts, team, card_rows) = match found {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a patient's care team");
                return super::layout::refusal(Reason::Internal, v.caller.request_id, false);
            }
        };
        if facts.is_none() {
            out.push_str(
                r#"<p class="msg" id="unknown">登録されていない患者です / No such patient.</p>"#,
            );
            return v.page(
                "患者の参加者とカード",
                "Care teams and cards",
                "patients",
                &out,
            );
        }
        let action = format!("{PATIENTS}/{}", q(patient));
        let token = v.token_field();
        write!(
            out,
            r#"<h2>参加者(ケアチーム) <span class="en">/ Care team</span></h2><table id="care-team"><tr><th>種別 / kind</th><th>参加者 / member</th><th></th></tr>"#
        )
        .ok();
        for (kind, member) in &team {
            write!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td><form method="post" action="{action}">{token}<input type="hidden" name="kind" value="{}"><input type="hidden" name="member" value="{}"><button name="op" value="remove">外す / Remove</button></form></td></tr>"#,
                escape(kind),
                escape(member),
                escape(kind),
                escape(member)
            )
            .ok();
        }
        write!(
            out,
            r#"</table><form method="post" action="{action}" id="add-member" class="filters">{token}<input type="hidden" name="op" value="add">
<label>種別 / kind <select name="kind"><option value="user">利用者 / person</option><option value="facility">施設 / facility</option></select></label>
<label>ID <input name="member" required maxlength="64" autocomplete="off"></label><div><button type="submit">招待 / Invite</button></div></form>
<h2>患者カード <span class="en">/ Patient IC cards</span></h2><table id="cards"><tr><th>シリアル / serial</th><th>状態 / status</th><th>発行 / issued</th><th>期限 / valid until</th><th></th></tr>"#
        )
        .ok();
        for c in &card_rows {
            let revoke = if c.status == "active" {
                format!(
                    r#"<form method="post" action="{action}">{token}<input type="hidden" name="serial" value="{}"><button name="op" value="revoke_card">失効 / Revoke</button></form>"#,
                    escape(&c.serial)
                )
            } else {
                String::new()
            };
            write!(
                out,
                r#"<tr><td class="mono">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{revoke}</td></tr>"#,
                escape(&c.serial),
                escape(&c.status),
                jst(c.issued_at),
                jst(c.not_after)
            )
            .ok();
        }
        out.push_str("</table><p class=\"en\">カードの発行はコマンドラインで行います(カードに書き込む鍵を作るため): <code>sekisho patient card issue</code> / Cards are issued at the command line, which makes the key written to the card.</p>");
        v.page(
            "患者の参加者とカード",
            "Care teams and cards",
            "patients",
            &out,
        )
    }

    /// `POST /.sekisho/console/patients/P` (token and permission checked).
    pub(super) async fn patient_act(
        &self,
        v: &Visit<'_>,
        patient: &str,
        form: &[(String, String)],
    ) -> Response<Body> {
        if !sekisho_protocol::is_valid_patient_id(patient) {
            return super::layout::refusal(Reason::BadRequest, v.caller.request_id, false);
        }
        let by = format!("{} ({})", v.session.user_id, v.who.via);
        let base = AuditRecord {
            event: sekisho_audit::Event::Registry,
            patient: Some(patient.to_string()),
            actor: Some(crate::headers::escape_text(&by, 200)),
            decision: sekisho_audit::Decision::Permit,
            ..v.record()
        };
        let op = field(form, "op");
        let made: Result<(), NotMade> = match op {
            "add" | "remove" => {
                let (kind, member) = (field(form, "kind"), field(form, "member").trim());
                if !matches!(kind, "user" | "facility")
                    || member.is_empty()
                    || member.len() > 64
                    || member.chars().any(|c| c.is_control())
                {
                    return super::layout::refusal(Reason::BadRequest, v.caller.request_id, false);
                }
                let add = op == "add";
                if add
                    && kind == "user"
                    && !matches!(
                        sekisho_store::users::get(&self.store, member).await,
                        Ok(Some(_))
                    )
                {
                    Err(NotMade::new(
                        Reason::BadRequest,
                        format!("{member} は登録されていません / no such person"),
                    ))
                } else {
                    let rec = AuditRecord {
                        reason: if add {
                            "care_team_added"
                        } else {
                            "care_team_removed"
                        }
                        .into(),
                        detail: Some(format!(
                            "{kind} {}",
                            crate::headers::escape_text(member, 64)
                        )),
                        ..base
                    };
                    let store = &self.store;
                    recorded(&self.audit, rec, async {
                        if !patients::care_team_change(store, patient, kind, member, add, &by)
                            .await?
                            && !add
                        {
                            anyhow::bail!("{kind} {member} is not in the care team of {patient}");
                        }
                        Ok(())
                    })
                    .await
                }
            }
            "revoke_card" => {
                let serial = field(form, "serial").trim().to_ascii_lowercase();
                match cards::card(&self.store, &serial).await {
                    Ok(Some(c)) if c.patient_id == patient && c.status == "active" => {
                        let rec = AuditRecord {
                            reason: "patient_card_revoked".into(),
                            detail: Some(format!(
                                "card {}",
                                crate::headers::escape_text(&serial, 64)
                            )),
                            ..base
                        };
                        recorded(&self.audit, rec, async {
                            if !cards::revoke_card(&self.store, &serial, &by).await? {
                                anyhow::bail!("patient card {serial} was revoked meanwhile");
                            }
                            Ok(())
                        })
                        .await
                    }
                    _ => Err(NotMade::new(
                        Reason::BadRequest,
                        "この患者の有効なカードではありません / not an active card of this patient",
                    )),
                }
            }
            _ => return super::layout::refusal(Reason::BadRequest, v.caller.request_id, false),
        };
        match made {
            Ok(()) => {
                super::layout::see_other(&format!("{PATIENTS}?patient={}&done={op}", q(patient)))
            }
            Err(e) => self.not_made(v, e),
        }
    }
}

fn done_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "add" => "招待しました。次の要求から反映されます。 / Invited: applies to the next request.",
        "remove" => {
            "外しました。次の要求から反映されます。 / Removed: applies to the next request."
        }
        "revoke_card" => {
            "カードを失効しました。同意の時間枠は閉じました。 / The card is revoked; its consent windows are closed."
        }
        _ => return None,
    })
}
