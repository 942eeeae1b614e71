-- Índices para los borrados por fecha del mantenimiento (sin ellos, cada pasada recorre las tablas
-- enteras). Sin CONCURRENTLY: las migraciones corren en una transacción; en una base con millones de
-- marcas, crearlos bloquea las escrituras de esas tablas unos segundos (hacerlo en un momento tranquilo).
CREATE INDEX "client_auth_failures_window_idx" ON "client_auth_failures" USING btree ("window_started_at");--> statement-breakpoint
CREATE INDEX "outbox_published_idx" ON "outbox_events" USING btree ("published_at") WHERE "outbox_events"."published_at" IS NOT NULL;--> statement-breakpoint
CREATE INDEX "processed_messages_processed_at_idx" ON "processed_messages" USING btree ("processed_at");--> statement-breakpoint
CREATE INDEX "webhook_deliveries_delivered_at_idx" ON "webhook_deliveries" USING btree ("delivered_at");