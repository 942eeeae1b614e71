-- Una petición con Idempotency-Key marca su reserva en la misma transacción que su cambio: si
-- la respuesta no llega a guardarse (proceso caído, base caída justo después), un reintento ya
-- no toma la reserva ni vuelve a aplicar el cambio.
ALTER TABLE "idempotency_keys" ADD COLUMN "committed_at" timestamp (3) with time zone;