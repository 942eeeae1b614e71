import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { and, count, eq, isNull, like, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streams } from "../../contracts/streams";
import { createSecretBox, secretContext } from "../../core/secret-box";
import { dlqEntries, outboxEvents, tenantInstances, webhookEndpoints } from "../../db/schema";
import { seedDemo } from "../../db/seed";
import { call } from "../../test/support/http";
import { startTestStack, type TestStack, waitFor } from "../../test/support/stack";
import { INTEGRATION_WORKER } from "./worker";

interface Hit {
  path: string;
  status: number;
  eventId: string;
  /** occurredAt del cuerpo firmado. */
  occurredAt: string;
}

// Entregas por endpoint independientes: el fallo de uno no bloquea ni reenvía a los demás.
describe("integration worker: independent webhook endpoints", () => {
  let stack: TestStack;
  let receiver: Server;
  let baseUrl: string;
  const hits: Hit[] = [];
  // Respuesta de cada ruta; sin entrada, 204.
  const answers = new Map<string, () => number>();

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const path = req.url ?? "";
        const status = answers.get(path)?.() ?? 204;
        const body = JSON.parse(Buffer.concat(chunks).toString() || "{}") as {
          occurredAt?: string;
        };
        hits.push({
          path,
          status,
          eventId: String(req.headers["farutech-event-id"] ?? ""),
          occurredAt: body.occurredAt ?? "",
        });
        // Una redirección apunta a otra ruta de este mismo receptor.
        const location = status >= 300 && status < 400 ? { location: `/redirected${path}` } : {};
        res.writeHead(status, location).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    baseUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    stack = await startTestStack({ database: "postgres" });
    await seedDemo(stack.db.handle.db);
  });
  afterAll(async () => {
    await stack?.stop();
    await new Promise<void>((r) => receiver?.close(() => r()));
  });

  const instanceId = async (instanceCode: string) => {
    const [row] = await stack.db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, instanceCode));
    if (!row) throw new Error(`demo instance ${instanceCode} missing`);
    return row.id;
  };

  /**
   * Endpoints de la instancia, insertados en orden de id: así el orden físico de la tabla es el
   * mismo que el de ORDER BY id y el código anterior (sin orden) los recorría igual.
   */
  const addEndpoints = async (tenantInstanceId: string, paths: string[]) => {
    const box = await createSecretBox(stack.env.ENCRYPTION_KEYS ?? "");
    const ids = paths.map(() => randomUUID()).sort();
    const rows = [];
    for (const [i, path] of paths.entries()) {
      const id = ids[i] ?? randomUUID();
      rows.push({ id, path });
      await stack.db.handle.db.insert(webhookEndpoints).values({
        id,
        tenantInstanceId,
        url: `${baseUrl}${path}`,
        secretEncrypted: await box.encrypt(
          `whsec_${randomUUID()}`,
          secretContext.webhookSecret(id),
        ),
        encryptionKeyId: box.activeKeyId,
      });
    }
    return rows;
  };

  const suspend = async (id: string) => {
    const res = await call(`${stack.adminUrl}/api/tenant-instances/${id}/suspend`, {
      token: await stack.adminToken(),
      json: {},
    });
    expect(res.status).toBe(200);
  };

  const deadLetterFor = (tenantInstanceId: string) =>
    and(
      eq(dlqEntries.domain, "integration"),
      sql`${dlqEntries.envelope} -> 'data' ->> 'tenantInstanceId' = ${tenantInstanceId}`,
    );
  const hitsOf = (path: string) => hits.filter((h) => h.path === path);
  /**
   * Hasta que no quede nada por hacer: el outbox publicado y el consumer del worker sin mensajes
   * pendientes ni sin ack (un reintento con nak retrasado cuenta como sin ack). Una espera fija
   * podía acabar antes que una entrega duplicada tardía y no verla.
   */
  const settle = async () => {
    const bus = stack.workers?.bus;
    if (!bus) throw new Error("the stack runs its workers");
    const jsm = await bus.jsm();
    await waitFor(
      async () => {
        const [unpublished] = await stack.db.handle.db
          .select({ n: count() })
          .from(outboxEvents)
          .where(
            and(like(outboxEvents.subject, "integration.%"), isNull(outboxEvents.publishedAt)),
          );
        if ((unpublished?.n ?? 1) > 0) return undefined;
        const i = await jsm.consumers.info(streams.integration.name, INTEGRATION_WORKER);
        return i.num_pending === 0 && i.num_ack_pending === 0 ? i : undefined;
      },
      { timeoutMs: 20_000 },
    );
  };

  it("delivers to every endpoint once when the middle one answers 404, names it in the DLQ and replays only to it", async () => {
    const id = await instanceId("vet-norte");
    const [first, middle, last] = await addEndpoints(id, ["/t1/first", "/t1/middle", "/t1/last"]);
    if (!first || !middle || !last) throw new Error("endpoints missing");
    answers.set(middle.path, () => 404);

    await suspend(id);
    const entry = await waitFor(async () => {
      const [row] = await stack.db.handle.db.select().from(dlqEntries).where(deadLetterFor(id));
      return row;
    });
    await settle();
    expect(hitsOf(first.path).map((h) => h.status)).toEqual([204]);
    expect(hitsOf(last.path).map((h) => h.status)).toEqual([204]);
    expect(hitsOf(middle.path).map((h) => h.status)).toEqual([404]);
    expect(entry.errorKind).toBe("permanent");
    expect(entry.deliveries).toBe(1);
    expect(entry.error).toContain(middle.id);
    expect(entry.error).toContain("answered 404");
    expect(entry.error).not.toContain(first.id);
    expect(entry.error).not.toContain(last.id);

    // El endpoint se arregla y el operador hace replay: solo lo recibe él, con el mismo id de evento.
    answers.delete(middle.path);
    const replayed = await call(`${stack.adminUrl}/api/dlq/${entry.id}/replay`, {
      token: await stack.adminToken(),
      json: {},
    });
    expect(replayed.status).toBe(202);
    await waitFor(async () => hitsOf(middle.path).find((h) => h.status === 204));
    await settle();
    expect(hitsOf(first.path)).toHaveLength(1);
    expect(hitsOf(last.path)).toHaveLength(1);
    const eventIds = new Set(
      [first, middle, last].flatMap((e) => hitsOf(e.path).map((h) => h.eventId)),
    );
    expect(eventIds.size).toBe(1);
    // Y con la hora del cambio, no la del replay: un receptor que ordena por ella no toma el
    // evento reprocesado por el más nuevo.
    const occurred = new Set(
      [first, middle, last].flatMap((e) => hitsOf(e.path).map((h) => h.occurredAt)),
    );
    expect([...occurred]).toHaveLength(1);
  }, 60_000);

  it("does not follow a redirect with the signed body: the endpoint is misconfigured (permanent)", async () => {
    const id = await instanceId("erp-lima");
    const [moved] = await addEndpoints(id, ["/t3/moved"]);
    if (!moved) throw new Error("endpoint missing");
    answers.set(moved.path, () => 307);
    await suspend(id);
    const entry = await waitFor(async () => {
      const [row] = await stack.db.handle.db.select().from(dlqEntries).where(deadLetterFor(id));
      return row;
    });
    await settle();
    expect(hitsOf(moved.path).map((h) => h.status)).toEqual([307]);
    // El cuerpo firmado no llega a la URL a la que redirige.
    expect(hitsOf(`/redirected${moved.path}`)).toEqual([]);
    expect(entry.errorKind).toBe("permanent");
    expect(entry.error).toContain("answered 307");
  }, 60_000);

  it("dead-letters at once an endpoint stored with credentials in its URL, without leaking them", async () => {
    const id = await instanceId("crm-lima");
    const [legacy] = await addEndpoints(id, ["/t4/legacy?token=tok123"]);
    if (!legacy) throw new Error("endpoint missing");
    // Registrado antes de que la API rechazara credenciales en la URL: fetch no lo envía nunca.
    await stack.db.handle.db
      .update(webhookEndpoints)
      .set({ url: `${baseUrl.replace("://", "://hookuser:S3cretPw@")}${legacy.path}` })
      .where(eq(webhookEndpoints.id, legacy.id));
    await suspend(id);
    const entry = await waitFor(async () => {
      const [row] = await stack.db.handle.db.select().from(dlqEntries).where(deadLetterFor(id));
      return row;
    });
    expect(entry.errorKind).toBe("permanent");
    expect(entry.deliveries).toBe(1);
    expect(entry.error).toContain(legacy.id);
    expect(entry.error).not.toContain("S3cretPw");
    expect(entry.error).not.toContain("tok123");
    // Ni la ruta, que en muchos receptores (Slack, Discord) es el token.
    expect(entry.error).not.toContain("/t4/legacy");
    expect(entry.error).toContain("http://127.0.0.1:");
  }, 60_000);

  it("does not resend to a healthy endpoint while another one is retried", async () => {
    const id = await instanceId("vet-sur");
    const [healthy, flaky] = await addEndpoints(id, ["/t2/healthy", "/t2/flaky"]);
    if (!healthy || !flaky) throw new Error("endpoints missing");
    let failuresLeft = 2;
    answers.set(flaky.path, () => (failuresLeft-- > 0 ? 503 : 204));

    await suspend(id);
    await waitFor(async () => hitsOf(flaky.path).find((h) => h.status === 204), {
      timeoutMs: 20_000,
    });
    await settle();
    expect(hitsOf(flaky.path).map((h) => h.status)).toEqual([503, 503, 204]);
    expect(hitsOf(healthy.path).map((h) => h.status)).toEqual([204]);
    const [dead] = await stack.db.handle.db.select().from(dlqEntries).where(deadLetterFor(id));
    expect(dead).toBeUndefined();
  }, 60_000);
});

// En producción (sin WEBHOOK_ALLOW_PRIVATE_TARGETS) un endpoint en la red interna no recibe nada:
// va a la DLQ como permanente, sin decir si algo respondía allí.
describe("integration worker: private destinations", () => {
  let stack: TestStack;
  let receiver: Server;
  let hits = 0;

  beforeAll(async () => {
    receiver = createServer((req, res) => {
      hits++;
      req.resume();
      res.writeHead(204).end();
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    stack = await startTestStack({
      database: "pglite",
      env: { WEBHOOK_ALLOW_PRIVATE_TARGETS: "false" },
    });
    await seedDemo(stack.db.handle.db);
  });
  afterAll(async () => {
    await stack?.stop();
    await new Promise<void>((r) => receiver?.close(() => r()));
  });

  it("dead-letters an endpoint on a loopback address without sending to it", async () => {
    const [instance] = await stack.db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-norte"));
    if (!instance) throw new Error("demo instance missing");
    const box = await createSecretBox(stack.env.ENCRYPTION_KEYS ?? "");
    const id = randomUUID();
    const port = (receiver.address() as AddressInfo).port;
    await stack.db.handle.db.insert(webhookEndpoints).values({
      id,
      tenantInstanceId: instance.id,
      url: `http://localhost:${port}/internal`,
      secretEncrypted: await box.encrypt(`whsec_${randomUUID()}`, secretContext.webhookSecret(id)),
      encryptionKeyId: box.activeKeyId,
    });
    const res = await call(`${stack.adminUrl}/api/tenant-instances/${instance.id}/suspend`, {
      token: await stack.adminToken(),
      json: {},
    });
    expect(res.status).toBe(200);
    const entry = await waitFor(async () => {
      const [row] = await stack.db.handle.db
        .select()
        .from(dlqEntries)
        .where(eq(dlqEntries.domain, "integration"));
      return row;
    });
    expect(entry.errorKind).toBe("permanent");
    expect(entry.deliveries).toBe(1);
    expect(entry.error).toContain(id);
    expect(entry.error).toContain("private or reserved address");
    expect(hits).toBe(0);
  }, 60_000);
});
