-- Lease de la ejecución en curso de una tarea: dos entregas de la misma tarea no corren a la vez.
-- Nula mientras nadie la ejecuta; una ejecución que deja de prorrogarla la pierde al vencer.
ALTER TABLE "provisioning_tasks" ADD COLUMN "lease_until" timestamp (3) with time zone;
