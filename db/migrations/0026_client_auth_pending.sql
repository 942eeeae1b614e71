-- Intentos de autenticación en curso, aparte de los fallos: el hash del secreto corre fuera de la
-- transacción (antes la retenía, con su conexión, y un aluvión de client_id inventados agotaba la base).
ALTER TABLE "client_auth_failures" ADD COLUMN "pending" integer DEFAULT 0 NOT NULL;
