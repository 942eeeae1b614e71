-- Índices de los planes de consulta medidos a escala (millones de filas de auditoría y outbox):
-- la lista de auditoría pasa a ordenarse por (occurred_at, id); el relay reintenta los apartados
-- sin recorrer el outbox; el borrado GDPR busca la auditoría por id y los clientes OAuth por
-- cliente. Se quitan índices que ningún plan usaba o que repetían otro. En una base grande,
-- CREATE INDEX bloquea las escrituras de su tabla mientras se construye: en producción conviene
-- correr antes, a mano, cada CREATE INDEX con CONCURRENTLY (el IF NOT EXISTS de abajo lo salta).
-- Un CONCURRENTLY cancelado deja el índice INVALID: se borra aquí y se vuelve a crear abajo.
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace AND c.relname IN (
      'api_clients_customer_idx', 'audit_entity_id_idx', 'audit_occurred_keyset_idx',
      'audit_actor_keyset_idx', 'audit_correlation_idx', 'dlq_entries_event_idx',
      'dlq_entries_pending_keyset_idx', 'idempotency_completed_idx', 'outbox_parked_idx',
      'refresh_tokens_client_idx', 'tenant_instances_status_keyset_idx')
  LOOP
    EXECUTE format('DROP INDEX %I', r.relname);
  END LOOP;
END $$;--> statement-breakpoint
DROP INDEX IF EXISTS "audit_actor_idx";--> statement-breakpoint
DROP INDEX IF EXISTS "audit_occurred_idx";--> statement-breakpoint
DROP INDEX IF EXISTS "overrides_subscription_idx";--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "api_clients_customer_idx" ON "api_clients" USING btree ("customer_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "audit_entity_id_idx" ON "audit_log" USING btree ("entity_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "audit_occurred_keyset_idx" ON "audit_log" USING btree ("occurred_at","id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "audit_actor_keyset_idx" ON "audit_log" USING btree ("actor","occurred_at","id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "audit_correlation_idx" ON "audit_log" USING btree ("correlation_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "dlq_entries_event_idx" ON "dlq_entries" USING btree ("event_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "dlq_entries_pending_keyset_idx" ON "dlq_entries" USING btree ("created_at","id") WHERE "dlq_entries"."replayed_at" IS NULL;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "idempotency_completed_idx" ON "idempotency_keys" USING btree ("completed_at");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "outbox_parked_idx" ON "outbox_events" USING btree ("seq") WHERE "outbox_events"."published_at" IS NULL AND "outbox_events"."parked_at" IS NOT NULL;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "refresh_tokens_client_idx" ON "refresh_tokens" USING btree ("client_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "tenant_instances_status_keyset_idx" ON "tenant_instances" USING btree ("status","created_at","id");