-- Fallos de webhook por (endpoint, evento): contar por evento hace idempotente la racha (una reentrega
-- o un replay del mismo evento no suma dos veces). Reemplaza la columna de 0033, que no llegó a usarse.
CREATE TABLE "webhook_failures" (
	"endpoint_id" uuid NOT NULL,
	"event_id" uuid NOT NULL,
	"failed_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "webhook_failures_endpoint_id_event_id_pk" PRIMARY KEY("endpoint_id","event_id")
);
--> statement-breakpoint
ALTER TABLE "webhook_failures" ADD CONSTRAINT "webhook_failures_endpoint_id_webhook_endpoints_id_fk" FOREIGN KEY ("endpoint_id") REFERENCES "public"."webhook_endpoints"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" DROP COLUMN "consecutive_failures";