import { OpenAPIHono } from "@hono/zod-openapi";
import { Scalar } from "@scalar/hono-api-reference";
import { bodyLimit } from "hono/body-limit";
import { AppError } from "../core/errors";
import { installBase } from "../core/http/base";
import { validationHook } from "../core/http/problem";
import type { AdminDeps, AdminEnv } from "./env";
import {
  rejectUndeclaredBody,
  withBodyErrors,
  withProtocolHeaders,
  withRequiredRoles,
  withTimestampFormats,
} from "./openapi";
import { registerAccess } from "./routes/access";
import { registerAudit } from "./routes/audit";
import { registerBilling } from "./routes/billing";
import { registerCustomers } from "./routes/customers";
import { registerDlq } from "./routes/dlq";
import { registerFeatures } from "./routes/features";
import { registerHealth } from "./routes/health";
import { registerModules } from "./routes/modules";
import { registerPlans } from "./routes/plans";
import { registerProducts } from "./routes/products";
import { registerProvisioning } from "./routes/provisioning";
import { registerSubscriptions } from "./routes/subscriptions";
import { registerTenantInstances } from "./routes/tenant-instances";
import { registerWebhooks } from "./routes/webhooks";
import { wellFormedJsonBody } from "./text-input";

export const OPENAPI_INFO = {
  openapi: "3.1.0",
  info: {
    title: "Farutech Orchestrator Admin API",
    version: "0.1.0",
    description: "Plano de control de Farutech: catálogo, clientes, instancias y provisioning.",
  },
};

export function createAdminApp(deps: AdminDeps): OpenAPIHono<AdminEnv> {
  const app = new OpenAPIHono<AdminEnv>({ defaultHook: validationHook });
  installBase(app, deps);
  // Antes de bodyLimit: a una operación sin cuerpo, cualquier cuerpo es un 400 que lo nombra.
  app.use("*", rejectUndeclaredBody(app));
  app.use(
    "/api/*",
    bodyLimit({
      maxSize: 256 * 1024,
      onError: () => {
        throw new AppError("payload_too_large", "The request body exceeds 256 KiB");
      },
    }),
  );
  // Texto que no es Unicode bien formado (un surrogate suelto) es un 400 que nombra el campo:
  // guardado se volvería "�" sin avisar.
  app.use("/api/*", wellFormedJsonBody());
  app.openAPIRegistry.registerComponent("securitySchemes", "Bearer", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "Token de acceso emitido por POST /oauth/token del edge",
  });

  registerHealth(app);
  registerProducts(app);
  registerModules(app);
  registerFeatures(app);
  registerPlans(app);
  registerCustomers(app);
  registerTenantInstances(app);
  registerSubscriptions(app);
  registerProvisioning(app);
  registerAccess(app);
  registerAudit(app);
  registerDlq(app);
  registerBilling(app);
  registerWebhooks(app);

  // Se genera una vez (las rutas ya están registradas) y se sirve igual a cada petición.
  let document: ReturnType<typeof app.getOpenAPI31Document> | undefined;
  app.get("/openapi.json", (c) => {
    // Primero los 413/415: withProtocolHeaders marca también el 415 que se repite.
    document ??= withTimestampFormats(
      withRequiredRoles(
        withProtocolHeaders(withBodyErrors(app.getOpenAPI31Document(OPENAPI_INFO))),
        app.routes,
      ),
    );
    return c.json(document);
  });
  app.get("/docs", Scalar({ url: "/openapi.json", pageTitle: "Farutech Orchestrator Admin API" }));
  return app;
}
