import { createRoute, OpenAPIHono } from "@hono/zod-openapi";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installBase } from "../core/http/base";
import { validationHook } from "../core/http/problem";
import type { RequestContextVariables } from "../core/http/request-context";
import { newId } from "../core/ids";
import { silentLogger } from "../core/logger";
import { customers, dlqEntries, provisioningTasks, tenantInstances } from "../db/schema";
import { type AdminHarness, startSeededAdmin } from "../test/support/admin";
import { expectProblem, type JsonResponse } from "../test/support/http";
import { rejectUndeclaredBody } from "./openapi";
import { insertInstance, newCustomer } from "./routes/subscriptions/test-fixtures";

interface Problem {
  code: string;
  detail: string;
  errors?: { path: string; message: string }[];
}
interface OpenApiDoc {
  paths: Record<
    string,
    Record<string, { requestBody?: unknown; parameters?: { in?: string; name?: string }[] }>
  >;
}

const WRITE_METHODS = ["post", "put", "patch", "delete"];
const errorPaths = (res: JsonResponse) => ((res.body as Problem).errors ?? []).map((e) => e.path);

/** Un cuerpo en streaming, sin Content-Length (chunked). */
function streamed(text: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      if (text) controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  });
}

// Una operación sin cuerpo en su esquema no puede ignorar en silencio el que le mandan: un
// `{"confirm":false}` a /erase no debe borrar a nadie.
describe("operations without a request body", () => {
  let h: AdminHarness;
  let admin: string;
  let customerId: string;
  let doc: OpenApiDoc;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin("pglite"));
    customerId = (await newCustomer(h, admin)).id;
    doc = (await h.request<OpenApiDoc>("GET", "/openapi.json")).body;
  });
  afterAll(async () => h?.stop());

  const post = (path: string, init: { body?: RequestInit["body"]; contentType?: string } = {}) =>
    h.app.request(path, {
      method: "POST",
      headers: {
        authorization: `Bearer ${admin}`,
        ...(init.contentType ? { "content-type": init.contentType } : {}),
      },
      ...(init.body === undefined ? {} : { body: init.body, duplex: "half" }),
    } as RequestInit);

  /** Una entrada de la DLQ reprocesable, como la deja el worker tras el último intento. */
  async function deadLetter(): Promise<string> {
    const db = h.db.handle.db;
    const instanceId = await insertInstance(db, {
      customerId,
      productCode: "FARUTECH_VET",
      status: "failed",
    });
    const taskId = newId();
    const correlationId = `bodyless-${taskId}`;
    await db.insert(provisioningTasks).values({
      id: taskId,
      tenantInstanceId: instanceId,
      kind: "provision",
      status: "dead_lettered",
      correlationId,
      requestHash: "x",
      response: {},
      attempts: 5,
    });
    const envelope = {
      id: newId(),
      type: "provisioning.provision",
      occurredAt: new Date().toISOString(),
      correlationId,
      data: { taskId, tenantInstanceId: instanceId, kind: "provision" },
    };
    const [entry] = await db
      .insert(dlqEntries)
      .values({
        domain: "provisioning",
        stream: "PROVISIONING",
        streamSequence: Math.floor(Math.random() * 1e9),
        messageKey: envelope.id,
        subject: "provisioning.tasks.provision",
        eventId: envelope.id,
        eventType: envelope.type,
        correlationId,
        envelope,
        rawPayload: JSON.stringify(envelope),
        error: "injected",
        errorKind: "transient",
        deliveries: 5,
      })
      .returning();
    if (!entry) throw new Error("no DLQ entry");
    return entry.id;
  }

  it('rejects {"confirm":false} on POST /customers/{id}/erase and erases nothing', async () => {
    const target = await newCustomer(h, admin);
    const res = await h.request("POST", `/api/customers/${target.id}/erase`, {
      token: admin,
      json: { confirm: false },
    });
    expectProblem(res, 400, "validation_failed");
    expect(errorPaths(res)).toEqual(["body.confirm"]);
    const [row] = await h.db.handle.db
      .select({ erasedAt: customers.erasedAt })
      .from(customers)
      .where(eq(customers.id, target.id));
    expect(row?.erasedAt).toBeNull();
    // Sin cuerpo, como en el README, sigue borrando.
    expect((await post(`/api/customers/${target.id}/erase`)).status).toBe(200);
  });

  it("rejects a malformed JSON body on POST /dlq/{id}/replay and does not replay", async () => {
    const entryId = await deadLetter();
    const res = await h.request("POST", `/api/dlq/${entryId}/replay`, {
      token: admin,
      body: "{",
      headers: { "content-type": "application/json" },
    });
    expectProblem(res, 400, "validation_failed");
    expect(errorPaths(res)).toEqual(["body"]);
    const [row] = await h.db.handle.db
      .select({ replayCount: dlqEntries.replayCount })
      .from(dlqEntries)
      .where(eq(dlqEntries.id, entryId));
    expect(row?.replayCount).toBe(0);
    expect((await post(`/api/dlq/${entryId}/replay`)).status).toBe(202);
  });

  it('rejects {"reason":"fraud"} on POST /tenant-instances/{id}/suspend and leaves it active', async () => {
    const instanceId = await insertInstance(h.db.handle.db, {
      customerId,
      productCode: "FARUTECH_VET",
    });
    const res = await h.request("POST", `/api/tenant-instances/${instanceId}/suspend`, {
      token: admin,
      json: { reason: "fraud" },
    });
    expectProblem(res, 400, "validation_failed");
    expect(errorPaths(res)).toEqual(["body.reason"]);
    const [row] = await h.db.handle.db
      .select({ status: tenantInstances.status })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, instanceId));
    expect(row?.status).toBe("active");
  });

  it("still accepts no body, an empty body (Content-Length 0 or chunked) and {}", async () => {
    const instanceId = await insertInstance(h.db.handle.db, {
      customerId,
      productCode: "FARUTECH_VET",
    });
    const path = (action: string) => `/api/tenant-instances/${instanceId}/${action}`;
    expect((await post(path("suspend"))).status).toBe(200);
    expect((await post(path("reactivate"), { body: "" })).status).toBe(200);
    expect((await post(path("suspend"), { body: streamed("") })).status).toBe(200);
    // `{}` no trae nada que ignorar: clientes que siempre mandan un objeto JSON siguen sirviendo.
    expect(
      (await post(path("reactivate"), { body: "{}", contentType: "application/json" })).status,
    ).toBe(200);
    // El cuerpo leído se repone: la idempotencia lo vuelve a leer para resumirlo.
    const keyed = () =>
      h.app.request(path("suspend"), {
        method: "POST",
        headers: { authorization: `Bearer ${admin}`, "idempotency-key": `bodyless-${instanceId}` },
        body: streamed(""),
        duplex: "half",
      } as RequestInit);
    expect((await keyed()).status).toBe(200);
    const replayed = await keyed();
    expect(replayed.status).toBe(200);
    expect(replayed.headers.get("idempotent-replayed")).toBe("true");
  });

  it("rejects any other body: text, form, JSON that is not an object, chunked", async () => {
    const path = `/api/tenant-instances/${crypto.randomUUID()}/suspend`;
    for (const [body, contentType] of [
      ["fraud", "text/plain"],
      ["reason=fraud", "application/x-www-form-urlencoded"],
      ["{}", undefined],
      ["[]", "application/json"],
      ["null", "application/json"],
      [" ", "application/json"],
      [streamed('{"reason":"fraud"}'), "application/json"],
    ] as const) {
      const res = await post(path, { body, ...(contentType ? { contentType } : {}) });
      const problem = (await res.json()) as Problem;
      expect(res.status, `${String(body)} ${contentType}`).toBe(400);
      expect(problem.code).toBe("validation_failed");
      expect(problem.errors?.[0]?.path).toMatch(/^body/);
    }
  });

  it("answers the same 400 to an oversized body, declared or chunked (never a 413)", async () => {
    const huge = JSON.stringify({ padding: "x".repeat(300 * 1024) });
    for (const body of [huge, streamed(huge)]) {
      const res = await post(`/api/customers/${crypto.randomUUID()}/erase`, {
        body,
        contentType: "application/json",
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as Problem).errors?.map((e) => e.path)).toEqual(["body"]);
    }
  });

  it("applies to every POST, PUT, PATCH and DELETE whose schema has no request body", async () => {
    const bodyless = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([method, op]) => WRITE_METHODS.includes(method) && !op.requestBody)
        .map(([method]) => ({ method: method.toUpperCase(), path })),
    );
    // erase, suspend, reactivate, replay y los DELETE.
    expect(bodyless.length).toBeGreaterThan(10);
    for (const { method, path } of bodyless) {
      const url = path.replace(/\{[^}]+\}/g, () => crypto.randomUUID());
      const res = await h.request(method, url, { token: admin, json: { unexpected: true } });
      expectProblem(res, 400, "validation_failed");
      expect(errorPaths(res), `${method} ${path}`).toEqual(["body.unexpected"]);
      // Sin cuerpo, la misma petición llega a la ruta (aquí, un 404 del id inventado).
      const empty = await h.request(method, url, { token: admin });
      expect(errorPaths(empty), `${method} ${path}`).not.toContain("body");
    }
  });
});

describe("rejectUndeclaredBody after a middleware that already read the body", () => {
  type Env = { Variables: RequestContextVariables & { deps: { logger: typeof silentLogger } } };
  const app = new OpenAPIHono<Env>({ defaultHook: validationHook });
  installBase(app, { logger: silentLogger });
  // Otro middleware que lee el cuerpo con la API de hono (queda en su cache, no en el stream).
  app.use("*", async (c, next) => {
    await c.req.text();
    await next();
  });
  app.use("*", rejectUndeclaredBody(app));
  app.openapi(
    createRoute({
      method: "post",
      path: "/things/{id}/archive",
      responses: { 200: { description: "ok" } },
    }),
    async (c) => c.json({ body: await c.req.text() }, 200),
  );

  it("still names the fields, and still lets {} and no body through", async () => {
    const send = (body?: string) =>
      app.request("/things/1/archive", {
        method: "POST",
        headers: { "content-type": "application/json" },
        ...(body === undefined ? {} : { body }),
      });
    const rejected = await send('{"confirm":false}');
    expect(rejected.status).toBe(400);
    expect(((await rejected.json()) as Problem).errors?.map((e) => e.path)).toEqual([
      "body.confirm",
    ]);
    expect(await (await send("{}")).json()).toEqual({ body: "{}" });
    expect(await (await send()).json()).toEqual({ body: "" });
  });
});
