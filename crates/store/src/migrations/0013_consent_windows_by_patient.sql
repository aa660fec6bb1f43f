-- A patient's open consent windows, for the gateways' in-memory view when that patient
-- changes: without it, every refresh read every window ever opened.
CREATE INDEX consent_windows_patient_open ON consent_windows (patient_id, expires_at) WHERE closed_at IS NULL;
