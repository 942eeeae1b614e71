import { and, eq, or } from "drizzle-orm";
import type { z } from "zod";
import { entitlementsChangedSchema } from "../../contracts/events";
import { subjects } from "../../contracts/streams";
import type { SecretBox } from "../../core/secret-box";
import { SIGNATURE_HEADER, signWebhook } from "../../core/webhook-signature";
import { tenantInstances, webhookEndpoints } from "../../db/schema";
import type { Database } from "../../db/types";
import type { WorkerDefinition } from "../runtime/consumer";
import { PermanentError } from "../runtime/errors";

export const INTEGRATION_WORKER = "integration-worker";

export interface IntegrationWorkerDeps {
  db: Database;
  secretBox: SecretBox;
  timeoutMs?: number;
}

// Entrega firmada de entitlements.changed a los endpoints del producto o de la instancia, con la
// misma política de reintentos y DLQ. Un receptor puede recibir un evento más de una vez:
// deduplica por Farutech-Event-Id.
export function integrationWorker(
  deps: IntegrationWorkerDeps,
): WorkerDefinition<z.infer<typeof entitlementsChangedSchema>> {
  return {
    name: INTEGRATION_WORKER,
    domain: "integration",
    filterSubject: subjects.entitlementsChanged,
    schema: entitlementsChangedSchema,
    logFields: (data) => ({ tenantInstanceId: data.tenantInstanceId }),
    async handle(ctx) {
      const [instance] = await deps.db
        .select({ productId: tenantInstances.productId })
        .from(tenantInstances)
        .where(eq(tenantInstances.id, ctx.data.tenantInstanceId));
      if (!instance) return;
      const endpoints = await deps.db
        .select()
        .from(webhookEndpoints)
        .where(
          and(
            eq(webhookEndpoints.active, true),
            or(
              eq(webhookEndpoints.tenantInstanceId, ctx.data.tenantInstanceId),
              eq(webhookEndpoints.productId, instance.productId),
            ),
          ),
        );
      const body = JSON.stringify({
        id: ctx.envelope.id,
        type: ctx.envelope.type,
        occurredAt: ctx.envelope.occurredAt,
        data: ctx.data,
      });
      for (const endpoint of endpoints) {
        const secret = await deps.secretBox.decrypt(endpoint.secretEncrypted);
        const timestamp = Math.floor(Date.now() / 1000);
        const res = await fetch(endpoint.url, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            [SIGNATURE_HEADER]: await signWebhook(secret, body, timestamp),
            "Farutech-Event-Id": ctx.envelope.id,
          },
          body,
          signal: AbortSignal.timeout(deps.timeoutMs ?? 5_000),
        });
        if (!res.ok) {
          const message = `webhook ${endpoint.url} answered ${res.status}`;
          // 4xx (salvo 408 y 429) no mejora reintentando: va a la DLQ.
          if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
            throw new PermanentError(message);
          }
          throw new Error(message);
        }
        ctx.logger.info({ webhookId: endpoint.id }, "webhook delivered");
      }
    },
  };
}
