-- See 0009_changes.sqlite.sql: the change log, filled by triggers so that every writer is
-- covered. The counter's row lock (UPDATE generation) orders the writers.
CREATE TABLE changes (
    seq     BIGINT PRIMARY KEY,
    topic   TEXT NOT NULL,
    item    TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE TABLE changes_horizon (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    pruned_through  BIGINT NOT NULL
);
INSERT INTO changes_horizon (id, pruned_through) VALUES (1, 0);

CREATE FUNCTION sekisho_patient_changed() RETURNS trigger AS $$
DECLARE
    pid TEXT;
    s BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN pid := OLD.patient_id; ELSE pid := NEW.patient_id; END IF;
    UPDATE generation SET value = value + 1 WHERE id = 1 RETURNING value INTO s;
    INSERT INTO changes (seq, topic, item, at)
        VALUES (s, 'patient', pid, EXTRACT(EPOCH FROM now())::BIGINT);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER patients_changed AFTER INSERT OR UPDATE OR DELETE ON patients
    FOR EACH ROW EXECUTE FUNCTION sekisho_patient_changed();
CREATE TRIGGER care_team_changed AFTER INSERT OR UPDATE OR DELETE ON care_team
    FOR EACH ROW EXECUTE FUNCTION sekisho_patient_changed();
CREATE TRIGGER consent_windows_changed AFTER INSERT OR UPDATE OR DELETE ON consent_windows
    FOR EACH ROW EXECUTE FUNCTION sekisho_patient_changed();
