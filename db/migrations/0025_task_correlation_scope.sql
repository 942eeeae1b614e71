-- El correlationId identifica una provisión (clave de idempotencia del seed 000), pero en una baja o
-- un cambio de features viene del X-Correlation-Id: el mismo id de incidente para dos instancias
-- daba un 422. Ahora solo se repite la misma petición (mismo correlation id y mismo hash).
ALTER TABLE "provisioning_tasks" DROP CONSTRAINT "provisioning_tasks_correlation_uq";--> statement-breakpoint
CREATE UNIQUE INDEX "provisioning_tasks_provision_correlation_uq" ON "provisioning_tasks" USING btree ("correlation_id") WHERE "provisioning_tasks"."kind" = 'provision';--> statement-breakpoint
ALTER TABLE "provisioning_tasks" ADD CONSTRAINT "provisioning_tasks_correlation_request_uq" UNIQUE("correlation_id","request_hash");