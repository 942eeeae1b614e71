-- Rotación de la contraseña del rol de una base Enterprise (POST /api/provisioning/{id}/rotate-credentials):
-- un tipo de tarea nuevo y la cadena pendiente mientras corre. Un worker anterior que reciba una de
-- estas tareas la manda a la DLQ (tipo desconocido): se reprocesa desde allí cuando todos los
-- workers son de esta versión (README, «Actualizar sin cortes»).
ALTER TYPE "public"."task_kind" ADD VALUE 'rotate_credentials';--> statement-breakpoint
ALTER TABLE "tenant_instances" ADD COLUMN "pending_connection_string_encrypted" text;