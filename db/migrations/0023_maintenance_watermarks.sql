-- Marca de tiempo de las tareas periódicas de los workers que dependen del reloj (p. ej. avisar
-- de las suscripciones que empiezan o vencen): cada pasada sigue donde quedó la anterior.
CREATE TABLE "maintenance_watermarks" (
	"name" text PRIMARY KEY NOT NULL,
	"at" timestamp (3) with time zone NOT NULL
);
