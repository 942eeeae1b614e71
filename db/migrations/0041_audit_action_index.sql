-- GET /api/audit?action=…: sin este índice cada filtro por acción recorría el log entero. Sin
-- CONCURRENTLY (las migraciones corren en una transacción): con un log de millones de filas, crearlo
-- bloquea las escrituras de audit_log unos segundos (hacerlo en un momento tranquilo).
CREATE INDEX "audit_action_keyset_idx" ON "audit_log" USING btree ("action","occurred_at","id");