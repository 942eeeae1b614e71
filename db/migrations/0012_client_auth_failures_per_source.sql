-- El contador de fallos pasa a ser por (client_id, origen): quien conoce un client_id ya no
-- bloquea al cliente legítimo desde otra dirección. Las filas vivas quedan en el origen 'unknown'.
ALTER TABLE "client_auth_failures" DROP CONSTRAINT "client_auth_failures_pkey";--> statement-breakpoint
ALTER TABLE "client_auth_failures" ADD COLUMN "source" text DEFAULT 'unknown' NOT NULL;--> statement-breakpoint
ALTER TABLE "client_auth_failures" ADD CONSTRAINT "client_auth_failures_client_id_source_pk" PRIMARY KEY("client_id","source");
