-- Un stream recreado (volumen de NATS perdido, borrado por un operador) vuelve a numerar desde 1:
-- con la secuencia como clave, un mensaje muerto nuevo chocaba con uno viejo y no se guardaba.
-- La clave es el id del evento o, si no se pudo leer, un hash del contenido guardado (el mismo
-- cálculo que workers/runtime/consumer.ts).
ALTER TABLE "dlq_entries" ADD COLUMN "message_key" text;--> statement-breakpoint
UPDATE "dlq_entries" SET "message_key" = coalesce(
  "event_id"::text,
  substr(encode(sha256(convert_to("raw_payload", 'UTF8')), 'hex'), 1, 32)
);--> statement-breakpoint
ALTER TABLE "dlq_entries" ALTER COLUMN "message_key" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "dlq_entries" DROP CONSTRAINT "dlq_entries_stream_seq_uq";--> statement-breakpoint
ALTER TABLE "dlq_entries" ADD CONSTRAINT "dlq_entries_message_uq" UNIQUE("stream","stream_sequence","message_key");
