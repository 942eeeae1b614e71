-- Rotación del secreto de un webhook (POST /api/webhooks/{id}/rotate-secret): el anterior sigue
-- firmando, junto al nuevo, hasta previous_secret_expires_at. Columnas nulas: compatible con el
-- código anterior mientras se despliega.
ALTER TABLE "webhook_endpoints" ADD COLUMN "previous_secret_encrypted" text;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD COLUMN "previous_secret_expires_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD CONSTRAINT "webhook_endpoints_previous_secret_expires" CHECK (("webhook_endpoints"."previous_secret_encrypted" IS NULL) = ("webhook_endpoints"."previous_secret_expires_at" IS NULL));