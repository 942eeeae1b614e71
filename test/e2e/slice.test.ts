import { eq } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoProducts } from "../../db/demo-data";
import { tenantInstances } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { provisionResponseSchema, taskSchema } from "../../functions/routes/provisioning/schema";
import { sharedDatabaseName } from "../../workers/provisioning/shared-registry";
import { call, expectProblem } from "../support/http";
import { startTestStack, type TestStack, waitFor } from "../support/stack";

interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
interface Ids {
  customerId: string;
  productId: string;
  planId: string;
  otherPlanId: string;
}

// El slice completo por HTTP real: función admin → JetStream → worker → edge.
describe.each(["postgres", "pglite"] as const)("provisioning slice on %s", (database) => {
  let stack: TestStack;
  let token: string;
  let ids: Ids;

  beforeAll(async () => {
    stack = await startTestStack({ database });
    await seedDemo(stack.db.handle.db);
    token = await stack.adminToken();
    const customers = await call<Page<{ id: string; country: string }>>(
      `${stack.adminUrl}/api/customers?country=CO&limit=100`,
      { token },
    );
    const products = await call<Page<{ id: string; code: string }>>(
      `${stack.adminUrl}/api/products`,
      { token },
    );
    const vet = products.body.items.find((p) => p.code === "FARUTECH_VET");
    const erp = products.body.items.find((p) => p.code === "FARUTECH_ERP");
    const plans = await call<Page<{ id: string; code: string }>>(
      `${stack.adminUrl}/api/plans?limit=100`,
      { token },
    );
    const plan = plans.body.items.find((p) => p.code === "VET_PROFESSIONAL");
    const otherPlan = plans.body.items.find((p) => p.code === "ERP_STANDARD");
    const customer = customers.body.items[0];
    if (!vet || !erp || !plan || !otherPlan || !customer)
      throw new Error("demo data not visible through the API");
    ids = {
      customerId: customer.id,
      productId: vet.id,
      planId: plan.id,
      otherPlanId: otherPlan.id,
    };
  });

  afterAll(async () => {
    await stack?.stop();
  });

  const provision = (body: Record<string, unknown>, t = token) =>
    call(`${stack.adminUrl}/api/provisioning/provision`, { token: t, json: body });

  const body = (instanceCode: string, extra: Record<string, unknown> = {}) => ({
    customerId: ids.customerId,
    productId: ids.productId,
    planId: ids.planId,
    instanceCode,
    databaseTier: "standard",
    ...extra,
  });

  it("provisions a Standard tenant whose edge entitlements are the plan plus overrides", async () => {
    const res = await provision(
      body("slice-1", {
        customFeatures: { max_users: 100, ADVANCED_REPORTS: true, BATCH_CONTROL: false },
      }),
    );
    expect(res.status).toBe(202);
    const accepted = provisionResponseSchema.parse(res.body);
    expect(accepted.status).toBe("provisioning");
    expect(res.headers.get("location")).toBe(`/api/provisioning/tasks/${accepted.taskId}`);

    const task = await waitFor(async () => {
      const r = await call(`${stack.adminUrl}/api/provisioning/tasks/${accepted.taskId}`, {
        token,
      });
      const t = taskSchema.parse(r.body);
      return t.status === "succeeded" ? t : undefined;
    });
    expect(task.attempts).toBe(1);
    expect(task.steps.map((s) => [s.name, s.status])).toEqual([
      ["register_tenant", "succeeded"],
      ["activate", "succeeded"],
      ["request_welcome_notification", "succeeded"],
    ]);

    // Lo esperado se arma desde los datos de demo, no desde el resolvedor.
    const product = demoProducts.find((p) => p.code === "FARUTECH_VET");
    const plan = product?.plans.find((p) => p.code === "VET_PROFESSIONAL");
    if (!product || !plan || plan.features === "all") throw new Error("demo plan missing");
    const expectedOn = new Set([...plan.features, "ADVANCED_REPORTS"]);
    expectedOn.delete("BATCH_CONTROL");
    const allCodes = product.modules.flatMap((m) => m.features.map((f) => f.code));
    const expectedFeatures = Object.fromEntries(allCodes.map((c) => [c, expectedOn.has(c)]));

    const ent = await call<Record<string, unknown>>(
      `${stack.edgeUrl}/v1/entitlements?instanceId=${accepted.tenantInstanceId}`,
      { token },
    );
    expect(ent.status).toBe(200);
    expect(ent.body).toMatchObject({
      instanceId: accepted.tenantInstanceId,
      productCode: "FARUTECH_VET",
      planCode: "VET_PROFESSIONAL",
      status: "active",
      features: expectedFeatures,
      limits: { ...plan.limits, max_users: 100 },
    });
    expect(Object.keys(ent.body.features as object).sort()).toEqual([...allCodes].sort());
    const etag = ent.headers.get("etag");
    expect(etag).toBe(`"${String(ent.body.version)}"`);

    const cached = await fetch(
      `${stack.edgeUrl}/v1/entitlements?instanceId=${accepted.tenantInstanceId}`,
      {
        headers: { authorization: `Bearer ${token}`, "if-none-match": etag ?? "" },
      },
    );
    expect(cached.status).toBe(304);
    expect(await cached.text()).toBe("");

    // Un token de tenant lee su instancia y ninguna otra.
    const tenantToken = await stack.token({
      kind: "tenant",
      roles: ["tenant_app"],
      customerId: ids.customerId,
      instanceIds: [accepted.tenantInstanceId],
    });
    const own = await call(
      `${stack.edgeUrl}/v1/entitlements?instanceId=${accepted.tenantInstanceId}`,
      {
        token: tenantToken,
      },
    );
    expect(own.status).toBe(200);
    const [other] = await stack.db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "erp-principal"));
    const foreign = await call(`${stack.edgeUrl}/v1/entitlements?instanceId=${other?.id}`, {
      token: tenantToken,
    });
    expectProblem(foreign, 403, "forbidden");

    if (database === "postgres" && stack.db.url) {
      // El tenant quedó registrado en la base compartida del producto.
      const url = new URL(stack.db.url);
      url.pathname = `/${sharedDatabaseName(stack.db.handle.databaseName, "FARUTECH_VET")}`;
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      const r = await client.query(
        "select tenant_code from farutech_tenants where tenant_id = $1",
        [accepted.tenantInstanceId],
      );
      await client.end();
      expect(r.rows).toEqual([{ tenant_code: accepted.tenantCode }]);
    }
  });

  it("provisions once for a repeated correlationId, even concurrently", async () => {
    const request = body("slice-idem", { correlationId: `corr-${database}-1` });
    const results = await Promise.all([1, 2, 3, 4].map(() => provision(request)));
    for (const r of results) expect(r.status).toBe(202);
    const taskIds = new Set(results.map((r) => (r.body as { taskId: string }).taskId));
    expect(taskIds.size).toBe(1);
    const again = await provision(request);
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect((again.body as { taskId: string }).taskId).toBe([...taskIds][0]);
    const rows = await stack.db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "slice-idem"));
    expect(rows).toHaveLength(1);

    const reused = await provision(
      body("slice-idem-other", { correlationId: `corr-${database}-1` }),
    );
    expectProblem(reused, 422, "unprocessable");
  });

  it("rejects malformed and inconsistent requests with problem+json, never a 500", async () => {
    const raw = (text: string, contentType = "application/json") =>
      call(`${stack.adminUrl}/api/provisioning/provision`, {
        token,
        body: text,
        headers: { "content-type": contentType },
      });
    expectProblem(await raw("{not json"), 400);
    expectProblem(await raw("[]"), 400, "validation_failed");
    expectProblem(await raw("null"), 400, "validation_failed");

    const missing = await provision({ customerId: "nope", instanceCode: "BAD CODE" });
    expectProblem(missing, 400, "validation_failed");
    const paths = ((missing.body as { errors: { path: string }[] }).errors ?? []).map(
      (e) => e.path,
    );
    expect(paths).toEqual(
      expect.arrayContaining([
        "body.customerId",
        "body.productId",
        "body.planId",
        "body.instanceCode",
        "body.databaseTier",
      ]),
    );
    expectProblem(await provision(body("ok-code", { unexpected: 1 })), 400, "validation_failed");
    expectProblem(
      await provision(body("ok-code", { customFeatures: { max_users: -1 } })),
      400,
      "validation_failed",
    );
    expectProblem(
      await provision(body("ok-code", { customFeatures: { max_users: "x" } })),
      400,
      "validation_failed",
    );

    // Dos claves que nombran el mismo límite (o la misma feature) son un error del cuerpo.
    const twice = await provision(
      body("ok-code", { customFeatures: { max_users: 10, MAX_USERS: 20, advanced_reports: true } }),
    );
    expectProblem(twice, 400, "validation_failed");
    expect((twice.body as { errors: { path: string }[] }).errors.map((e) => e.path)).toEqual([
      "body.customFeatures.MAX_USERS",
    ]);

    const unknown = await provision(
      body("ok-code", { customFeatures: { NOT_A_FEATURE: true, nope_limit: 3 } }),
    );
    expectProblem(unknown, 422, "unprocessable");
    expect((unknown.body as { unknownCodes: string[] }).unknownCodes.sort()).toEqual([
      "NOT_A_FEATURE",
      "nope_limit",
    ]);

    expectProblem(
      await provision(body("ok-code", { planId: ids.otherPlanId })),
      422,
      "unprocessable",
    );
    expectProblem(
      await provision(body("ok-code", { customerId: crypto.randomUUID() })),
      404,
      "not_found",
    );

    const first = await provision(body("dup-code"));
    expect(first.status).toBe(202);
    expectProblem(await provision(body("dup-code")), 409, "conflict");

    expectProblem(
      await call(`${stack.adminUrl}/api/provisioning/tasks/not-a-uuid`, { token }),
      400,
      "validation_failed",
    );
    expectProblem(
      await call(`${stack.adminUrl}/api/provisioning/tasks/${crypto.randomUUID()}`, { token }),
      404,
      "not_found",
    );
    expectProblem(
      await call(`${stack.adminUrl}/api/customers?limit=1000`, { token }),
      400,
      "validation_failed",
    );
    expectProblem(
      await call(`${stack.adminUrl}/api/customers?cursor=%%%`, { token }),
      400,
      "validation_failed",
    );
  });

  it("requires a platform_admin Bearer token", async () => {
    const none = await call(`${stack.adminUrl}/api/customers`);
    expectProblem(none, 401, "unauthorized");
    expect(none.headers.get("www-authenticate")).toContain("Bearer");
    expectProblem(
      await call(`${stack.adminUrl}/api/customers`, { token: "not.a.jwt" }),
      401,
      "unauthorized",
    );
    const tenantToken = await stack.token({
      kind: "tenant",
      roles: ["tenant_app"],
      customerId: ids.customerId,
    });
    expectProblem(await provision(body("forbidden-1"), tenantToken), 403, "forbidden");
    expectProblem(
      await call(`${stack.adminUrl}/api/tenant-instances`, { token: tenantToken }),
      403,
      "forbidden",
    );
  });

  it("lists tenant instances with cursor pagination", async () => {
    const seen = new Set<string>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url = `${stack.adminUrl}/api/tenant-instances?limit=3${cursor ? `&cursor=${cursor}` : ""}`;
      const res: Awaited<ReturnType<typeof call<Page<{ id: string; subscription: unknown }>>>> =
        await call(url, {
          token,
        });
      expect(res.status).toBe(200);
      for (const item of res.body.items) {
        expect(seen.has(item.id)).toBe(false);
        seen.add(item.id);
      }
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor && pages < 20);
    const all = await stack.db.handle.db.select({ id: tenantInstances.id }).from(tenantInstances);
    expect(seen.size).toBe(all.length);
    expect(pages).toBeGreaterThan(3);
  });

  it("reports health, readiness and the OpenAPI document", async () => {
    expect((await call(`${stack.adminUrl}/healthz`)).body).toEqual({ status: "ok" });
    const ready = await call(`${stack.adminUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: "ready", checks: { database: "ok", broker: "ok" } });
    const doc = await call<{ openapi: string; paths: Record<string, unknown> }>(
      `${stack.adminUrl}/openapi.json`,
    );
    expect(doc.body.openapi).toBe("3.1.0");
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining([
        "/api/provisioning/provision",
        "/api/provisioning/tasks/{taskId}",
        "/api/customers",
      ]),
    );
  });
});
