import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { writeGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  ifMatchHeader,
  preconditionFailed,
  uuidParam,
} from "../../openapi";
import { expectedVersion } from "../../services/concurrency";
import { serviceContext } from "../../services/context";
import {
  requestCredentialRotation,
  requestDeprovision,
  requestFeatureUpdate,
} from "../../services/deprovisioning";
import {
  credentialRotationResponseSchema,
  deprovisionQuerySchema,
  deprovisionResponseSchema,
  featureMapSchema,
  featureUpdateResponseSchema,
} from "./schema";

const params = z.object({
  tenantInstanceId: uuidParam("tenantInstanceId", "Id de la instancia"),
});

const deprovision = createRoute({
  operationId: "deprovisionTenant",
  method: "delete",
  path: "/api/provisioning/{tenantInstanceId}",
  tags: ["provisioning"],
  summary: "Da de baja una instancia (asíncrono; repetirlo con la baja en curso es un no-op)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: {
    params,
    query: deprovisionQuerySchema,
    headers: z.object({
      "if-match": z
        .string()
        .optional()
        .openapi({ description: "ETag de la instancia; 412 si cambió", example: '"v3"' }),
    }),
  },
  responses: {
    202: {
      description: "Aceptado: un worker suspende y da de baja la instancia; consulte la tarea",
      content: { "application/json": { schema: deprovisionResponseSchema } },
    },
    ...errorResponses,
    412: preconditionFailed,
  },
});

const updateFeatures = createRoute({
  operationId: "updateTenantFeatures",
  method: "put",
  path: "/api/provisioning/{tenantInstanceId}/features",
  tags: ["provisioning"],
  summary: "Fija overrides de features y límites de la instancia (asíncrono)",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: {
    params,
    headers: ifMatchHeader,
    body: { required: true, content: { "application/json": { schema: featureMapSchema } } },
  },
  responses: {
    202: {
      description: "Aceptado: un worker aplica los overrides; consulte la tarea",
      content: { "application/json": { schema: featureUpdateResponseSchema } },
    },
    ...errorResponses,
    412: preconditionFailed,
  },
});

const rotateCredentials = createRoute({
  operationId: "rotateTenantDatabaseCredentials",
  method: "post",
  path: "/api/provisioning/{tenantInstanceId}/rotate-credentials",
  tags: ["provisioning"],
  summary: "Contraseña nueva para el rol de la base propia de una instancia Enterprise (asíncrono)",
  description:
    "Tras terminar la tarea, las conexiones nuevas necesitan la cadena nueva (GET /api/tenant-instances/{id}/connection); las abiertas siguen. Con una rotación en curso devuelve la misma tarea.",
  security: bearerSecurity,
  middleware: writeGuard(TENANT_WRITE),
  request: { params, headers: ifMatchHeader },
  responses: {
    202: {
      description: "Aceptado: un worker cambia la contraseña y guarda la cadena nueva",
      content: { "application/json": { schema: credentialRotationResponseSchema } },
    },
    ...errorResponses,
    412: preconditionFailed,
  },
});

export function registerProvisioningOperations(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(deprovision, async (c) => {
    const { tenantInstanceId } = c.req.valid("param");
    const { response, replayed } = await requestDeprovision(
      serviceContext(c),
      tenantInstanceId,
      { purge: c.req.valid("query").purge === "true" },
      expectedVersion(c),
    );
    if (replayed) c.header("idempotent-replayed", "true");
    c.header("location", `/api/provisioning/tasks/${response.taskId}`);
    return c.json(response, 202);
  });
  app.openapi(rotateCredentials, async (c) => {
    const { tenantInstanceId } = c.req.valid("param");
    const { response, replayed } = await requestCredentialRotation(
      serviceContext(c),
      tenantInstanceId,
      expectedVersion(c),
    );
    if (replayed) c.header("idempotent-replayed", "true");
    c.header("location", `/api/provisioning/tasks/${response.taskId}`);
    return c.json(response, 202);
  });
  app.openapi(updateFeatures, async (c) => {
    const { tenantInstanceId } = c.req.valid("param");
    const { response, replayed } = await requestFeatureUpdate(
      serviceContext(c),
      tenantInstanceId,
      c.req.valid("json"),
      expectedVersion(c),
    );
    if (replayed) c.header("idempotent-replayed", "true");
    c.header("location", `/api/provisioning/tasks/${response.taskId}`);
    return c.json(response, 202);
  });
}
