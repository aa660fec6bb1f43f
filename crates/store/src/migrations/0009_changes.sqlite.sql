-- What changed, for gateways that keep facts in memory (patients: consent, care team, consent
-- windows, cards). A change takes the next value of the change counter (`generation`) as its
-- `seq`, in the writer's transaction: the counter's row lock orders the writers, so rows become
-- visible in `seq` order and a reader that saw `seq` N has seen every change up to N.
-- Triggers record the changes, so every writer is covered: the CLI, an import, an operator's
-- SQL.
CREATE TABLE changes (
    seq     BIGINT PRIMARY KEY,
    topic   TEXT NOT NULL,
    item    TEXT NOT NULL,
    at      BIGINT NOT NULL
);
-- Changes up to `pruned_through` may be gone; a reader that last saw an older one reloads.
CREATE TABLE changes_horizon (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    pruned_through  BIGINT NOT NULL
);
INSERT INTO changes_horizon (id, pruned_through) VALUES (1, 0);

CREATE TRIGGER patients_ins AFTER INSERT ON patients BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', NEW.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER patients_upd AFTER UPDATE ON patients BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', NEW.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER patients_del AFTER DELETE ON patients BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', OLD.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER care_team_ins AFTER INSERT ON care_team BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', NEW.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER care_team_upd AFTER UPDATE ON care_team BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', NEW.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER care_team_del AFTER DELETE ON care_team BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', OLD.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER consent_windows_ins AFTER INSERT ON consent_windows BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', NEW.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER consent_windows_upd AFTER UPDATE ON consent_windows BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', NEW.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE TRIGGER consent_windows_del AFTER DELETE ON consent_windows BEGIN
    UPDATE generation SET value = value + 1 WHERE id = 1;
    INSERT INTO changes (seq, topic, item, at) VALUES ((SELECT value FROM generation WHERE id = 1), 'patient', OLD.patient_id, CAST(strftime('%s', 'now') AS INTEGER));
END;
