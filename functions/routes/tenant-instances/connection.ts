import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AdminEnv } from "../../env";
import { readGuard } from "../../middleware/guards";
import { TENANT_WRITE } from "../../middleware/roles";
import {
  bearerSecurity,
  errorResponses,
  noStoreHeader,
  readErrorResponses,
  uuidParam,
} from "../../openapi";
import { readTenantConnection } from "../../services/connection-strings";
import { serviceContext } from "../../services/context";

const connectionSchema = z
  .object({
    tenantInstanceId: z.uuid().openapi({
      description: "Id de la instancia",
      example: "0b8f2c1e-6f7a-4d7e-9a55-2f1d3c4b5a69",
    }),
    databaseTier: z.literal("enterprise").openapi({
      description: "Solo las instancias Enterprise tienen base propia",
      example: "enterprise",
    }),
    connectionString: z.string().openapi({
      description: "Cadena de conexión del rol de la instancia a su base (secreto)",
      example: "postgres://t_0b8f2c1e…:…@db.farutech.internal:5432/t_0b8f2c1e…",
    }),
    encryptionKeyId: z.string().nullable().openapi({
      description: "Clave de ENCRYPTION_KEYS con la que está guardada",
      example: "enc-2026-11",
    }),
  })
  .openapi("TenantConnection");

// Un secreto: solo platform_admin (support lee instancias, no credenciales), sin cache y auditado.
const route = createRoute({
  operationId: "getTenantInstanceConnection",
  method: "get",
  path: "/api/tenant-instances/{id}/connection",
  tags: ["tenants"],
  summary: "Cadena de conexión de la base propia de una instancia Enterprise (auditada)",
  description:
    "Para entregarla a la app hija de la instancia. Una instancia Standard no tiene base propia " +
    "(409: su app usa la base compartida del producto con app.tenant_id = id de la instancia); " +
    "una aún sin base o dada de baja, 409. Cada lectura deja una fila de auditoría sin el valor.",
  security: bearerSecurity,
  middleware: readGuard(TENANT_WRITE),
  request: { params: z.object({ id: uuidParam("id", "Id de la instancia") }) },
  responses: {
    200: {
      description: "La cadena de conexión",
      headers: noStoreHeader,
      content: { "application/json": { schema: connectionSchema } },
    },
    ...readErrorResponses,
    409: errorResponses[409],
  },
});

export function registerTenantInstanceConnection(app: OpenAPIHono<AdminEnv>): void {
  app.openapi(route, async (c) => {
    const { id } = c.req.valid("param");
    const connection = await readTenantConnection(serviceContext(c), c.var.deps.secretBox, id);
    c.header("cache-control", "no-store");
    return c.json(connection, 200);
  });
}
