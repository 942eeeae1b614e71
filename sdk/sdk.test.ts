import { execFile, execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { serve } from "@hono/node-server";
import { and, eq, isNull } from "drizzle-orm";
import getPort from "get-port";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unstable_dev } from "wrangler";
import { generateSigningKey } from "../core/auth/keys";
import { silentLogger } from "../core/logger";
import { createDb } from "../db/client";
import { demoProducts } from "../db/demo-data";
import {
  apiClients,
  customers,
  refreshTokens,
  subscriptionFeatureOverrides,
  subscriptions,
  tenantInstances,
} from "../db/schema";
import { seedDemo } from "../db/seed";
import type { Database } from "../db/types";
import { createNodeEdgeApp } from "../edge/node";
import { insertInstance } from "../functions/routes/subscriptions/test-fixtures";
import { createApiClient } from "../test/support/clients";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { formPost } from "../test/support/edge";
import {
  createFarutechClient,
  FarutechAuthError,
  type FarutechClientOptions,
  FarutechError,
  FarutechForbiddenError,
  FarutechUnavailableError,
  type FetchLike,
} from "./index";

const require = createRequire(import.meta.url);

// El edge real (createNodeEdgeApp) servido por HTTP en un puerto propio, sobre Postgres con la
// demo. Nada del edge se simula: las pruebas cuentan peticiones con un fetch que envuelve al real.

const ACCESS_TOKEN_TTL_S = 30;
const MAX_AGE_MS = 1_000;

interface Call {
  path: string;
  grantType: string | null;
  status: number;
  ifNoneMatch: string | null;
  refreshToken?: string;
}

let db: TestDatabase;
let edgeEnv: Record<string, string>;
let edge: { url: string; port: number; server: Server | undefined; start(): Promise<void> };
let tenant: { id: string; secret: string };
let norteId: string;
let patitasId: string;
let otherInstanceId: string;

const stopServer = (server: Server) =>
  new Promise<void>((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeAllConnections();
  });

beforeAll(async () => {
  db = await createPostgresTestDatabase();
  await seedDemo(db.handle.db);
  const [patitas] = await db.handle.db
    .select()
    .from(customers)
    .where(eq(customers.taxId, "VPA010203AB1"));
  const [norte] = await db.handle.db
    .select()
    .from(tenantInstances)
    .where(eq(tenantInstances.instanceCode, "vet-norte"));
  const [other] = await db.handle.db
    .select()
    .from(tenantInstances)
    .where(eq(tenantInstances.instanceCode, "erp-principal"));
  if (!patitas || !norte || !other || !db.url) throw new Error("demo data missing");
  norteId = norte.id;
  patitasId = patitas.id;
  otherInstanceId = other.id;
  tenant = await createApiClient(db.handle.db, {
    kind: "tenant",
    roles: ["tenant_app"],
    customerId: patitas.id,
    instanceIds: [norte.id],
  });
  edgeEnv = {
    DATABASE_URL: db.url,
    AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("sdk-test-1")]),
    AUTH_ISSUER: "http://edge.test",
    AUTH_AUDIENCE: "farutech-orchestrator",
    AUTH_ACCESS_TOKEN_TTL: String(ACCESS_TOKEN_TTL_S),
    // Sin la caché SWR del edge (se prueba en edge/): aquí cuenta solo la del SDK.
    ENTITLEMENTS_FRESH_MS: "0",
    ENTITLEMENTS_MAX_AGE_MS: "0",
    LOG_LEVEL: "silent",
  };
  const app = await createNodeEdgeApp(edgeEnv, db.handle.db, silentLogger);
  const port = await getPort();
  edge = {
    url: `http://127.0.0.1:${port}`,
    port,
    server: undefined,
    // Mismo puerto al volver: así se prueba "el edge se cayó y volvió".
    start: () =>
      new Promise<void>((resolve) => {
        const server = serve(
          { fetch: app.fetch, port, hostname: "127.0.0.1" },
          (info: AddressInfo) => {
            expect(info.port).toBe(port);
            resolve();
          },
        ) as Server;
        edge.server = server;
      }),
  };
  await edge.start();
}, 60_000);

afterAll(async () => {
  if (edge?.server) await stopServer(edge.server);
  await db?.drop();
});

interface Tamper {
  /** Reescribe el cuerpo de un 200 de /oauth/token. */
  transform?: (body: Record<string, unknown>) => Record<string, unknown>;
  /** Respuesta simulada en lugar de la del edge (fallos que el edge real no da a voluntad). */
  fault?: (path: string, request: Request) => Response | undefined | Promise<Response | undefined>;
}

/** fetch real que anota cada petición al edge (y los refresh tokens que emite). */
function recordingFetch({ transform, fault }: Tamper = {}) {
  const calls: Call[] = [];
  const fetchImpl: FetchLike = async (input, init) => {
    const request = new Request(input, init);
    const path = new URL(request.url).pathname;
    const grantType =
      path === "/oauth/token"
        ? new URLSearchParams(await request.clone().text()).get("grant_type")
        : null;
    const call: Call = {
      path,
      grantType,
      status: 0,
      ifNoneMatch: request.headers.get("if-none-match"),
    };
    calls.push(call);
    let res = (await fault?.(path, request)) ?? (await fetch(request));
    call.status = res.status;
    if (path === "/oauth/token" && res.ok) {
      let body = (await res.json()) as Record<string, unknown>;
      if (typeof body.refresh_token === "string") call.refreshToken = body.refresh_token;
      if (transform) body = transform(body);
      res = new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
    }
    return res;
  };
  const of = (path: string) => calls.filter((c) => c.path === path);
  return {
    fetch: fetchImpl,
    calls,
    tokens: () => of("/oauth/token"),
    entitlements: () => of("/v1/entitlements"),
    lastRefreshToken: () => of("/oauth/token").findLast((c) => c.refreshToken)?.refreshToken,
  };
}

/** Un 200 cuyo cuerpo se corta a medias (conexión reiniciada), como lo entrega fetch. */
function cutMidBody(): Response {
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"instanceId":"'));
      controller.error(new TypeError("terminated"));
    },
  });
  return new Response(stream, { status: 200, headers: { "content-type": "application/json" } });
}

/** Un edge que no responde: solo termina cuando quien llama aborta la petición. */
function neverAnswers(request: Request): Promise<Response> {
  return new Promise((_resolve, reject) => {
    if (request.signal.aborted) reject(request.signal.reason);
    request.signal.addEventListener("abort", () => reject(request.signal.reason), { once: true });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Repite `probe` hasta que devuelva algo (o falla pasado `timeoutMs`). */
async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** grant_type de una petición a /oauth/token, sin consumir su cuerpo. */
async function grantOf(request: Request): Promise<string | null> {
  return new URLSearchParams(await request.clone().text()).get("grant_type");
}

/** Un `ctx` de Worker que guarda lo que recibe waitUntil. */
function fakeCtx() {
  const handed: Promise<unknown>[] = [];
  return {
    scope: {
      waitUntil(promise: Promise<unknown>) {
        handed.push(promise);
      },
    },
    all: () => Promise.all(handed),
  };
}

/** ¿Terminó ya `promise`? Sin E/S de por medio basta con dejar correr las microtareas. */
async function hasSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  const mark = () => {
    settled = true;
  };
  promise.then(mark, mark);
  await new Promise((r) => setImmediate(r));
  return settled;
}

/**
 * Logger que avisa cuando el SDK escribe un mensaje: así se espera lo que hace en segundo plano
 * (una renovación de token) sin relojes ni esperas a ciegas.
 */
function watchedLogger() {
  const waiting: { msg: string; resolve: () => void }[] = [];
  const log = (_obj: Record<string, unknown>, msg: string) => {
    for (const w of waiting.filter((w) => w.msg === msg)) {
      waiting.splice(waiting.indexOf(w), 1);
      // El mensaje sale a mitad de la cadena de promesas (p. ej. antes de soltar la petición en
      // vuelo): setImmediate avisa cuando esas microtareas ya corrieron, sin E/S de por medio.
      setImmediate(w.resolve);
    }
  };
  return {
    logger: { debug: log, warn: log },
    /** Se cumple con el próximo `msg`; pedirla antes de lo que lo provoca. */
    next: (msg: string) => new Promise<void>((resolve) => waiting.push({ msg, resolve })),
  };
}

function testClient(overrides: Partial<FarutechClientOptions> = {}, tamper: Tamper = {}) {
  const clock = { t: Date.now() };
  const recorder = recordingFetch(tamper);
  const client = createFarutechClient({
    edgeUrl: edge.url,
    clientId: tenant.id,
    clientSecret: tenant.secret,
    instanceId: norteId,
    fetch: recorder.fetch,
    maxAgeMs: MAX_AGE_MS,
    // El logger pino del proyecto encaja en la interfaz del SDK.
    logger: silentLogger,
    now: () => clock.t,
    ...overrides,
  });
  return { client, clock, recorder };
}

// Demo: vet-norte tiene VET_PROFESSIONAL, Disable BATCH_CONTROL y max_users = 100.
function expectedNorte() {
  const vet = demoProducts.find((p) => p.code === "FARUTECH_VET");
  const plan = vet?.plans.find((p) => p.code === "VET_PROFESSIONAL");
  if (!vet || !plan || plan.features === "all") throw new Error("demo data changed");
  const on = new Set(plan.features.filter((f) => f !== "BATCH_CONTROL"));
  const codes = vet.modules.flatMap((m) => m.features.map((f) => f.code));
  return {
    features: Object.fromEntries(codes.map((c) => [c, on.has(c)])),
    limits: { ...plan.limits, max_users: 100 },
  };
}

async function norteSubscriptionId(database: Database) {
  const [subscription] = await database
    .select()
    .from(subscriptions)
    .where(eq(subscriptions.tenantInstanceId, norteId));
  if (!subscription) throw new Error("vet-norte has no subscription");
  return subscription.id;
}

describe("tokens", () => {
  it("gets one token for concurrent callers and reuses it", async () => {
    const { client, recorder } = testClient();
    await Promise.all([
      client.isEnabled("DIGITAL_RECORDS"),
      client.limit("max_users"),
      client.snapshot(),
      client.accessToken(),
    ]);
    expect(recorder.tokens()).toEqual([
      expect.objectContaining({ grantType: "client_credentials", status: 200 }),
    ]);
    expect(recorder.entitlements()).toHaveLength(1);
    await client.isEnabled("DIGITAL_RECORDS");
    await client.accessToken();
    expect(recorder.calls).toHaveLength(2);
    await client.close();
  });

  it("renews before expiry with the refresh token, and falls back to client credentials when it is rejected", async () => {
    const watch = watchedLogger();
    const obtained = () => watch.next("access token obtained");
    const { client, clock, recorder } = testClient({ logger: watch.logger });
    const first = await client.accessToken();
    // 80 % de 30 s = 24 s: a los 23 s el token sigue sirviendo.
    clock.t += 23_000;
    expect(await client.accessToken()).toBe(first);
    expect(recorder.tokens()).toHaveLength(1);

    // A los 25 s el token aún vale: se sigue usando mientras la renovación va en segundo plano.
    clock.t += 2_000;
    let renewed = obtained();
    const [a, b] = await Promise.all([client.accessToken(), client.refresh()]);
    expect(a).toBe(first);
    expect(b.source).toBe("edge");
    await renewed;
    expect(recorder.tokens().map((c) => [c.grantType, c.status])).toEqual([
      ["client_credentials", 200],
      ["refresh_token", 200],
    ]);
    const second = await client.accessToken();
    expect(second).not.toBe(first);

    // Otro renuevo usa el refresh token rotado (el edge rechaza el anterior por reuso).
    clock.t += 25_000;
    renewed = obtained();
    expect(await client.accessToken()).toBe(second);
    await renewed;
    expect(recorder.tokens().at(-1)).toMatchObject({ grantType: "refresh_token", status: 200 });

    // Revocado por fuera (p. ej. un operador): invalid_grant y vuelta a client_credentials.
    const current = recorder.lastRefreshToken();
    if (!current) throw new Error("the edge issued no refresh token");
    const revoke = await fetch(
      `${edge.url}/oauth/revoke`,
      formPost({ token: current, client_id: tenant.id, client_secret: tenant.secret }),
    );
    expect(revoke.status).toBe(200);
    clock.t += 25_000;
    renewed = obtained();
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    await renewed;
    expect(
      recorder
        .tokens()
        .slice(-2)
        .map((c) => [c.grantType, c.status]),
    ).toEqual([
      ["refresh_token", 400],
      ["client_credentials", 200],
    ]);
    await client.close();
  });

  it("works with an edge that returns no refresh_token", async () => {
    // Simula el edge anterior al grant refresh_token quitando el campo de la respuesta real.
    const watch = watchedLogger();
    const { client, clock, recorder } = testClient(
      { logger: watch.logger },
      { transform: ({ refresh_token: _drop, ...rest }) => rest },
    );
    await client.accessToken();
    clock.t += 25_000;
    const renewed = watch.next("access token obtained");
    await client.accessToken();
    await renewed;
    expect(recorder.tokens().map((c) => c.grantType)).toEqual([
      "client_credentials",
      "client_credentials",
    ]);
    await client.close();
  });

  it("keeps the valid token after a failed renewal (5xx or 429) and backs off up to 30 s", async () => {
    const watch = watchedLogger();
    let tokenFault: (() => Response) | undefined;
    const { client, clock, recorder } = testClient(
      { logger: watch.logger },
      {
        // 600 s de vida (renueva a los 480 s): cabe toda la espera antes de que venza.
        transform: (body) => ({ ...body, expires_in: 600 }),
        fault: (path) => (path === "/oauth/token" ? tokenFault?.() : undefined),
      },
    );
    const first = await client.accessToken();
    const statuses = () => recorder.tokens().map((c) => c.status);
    // La renovación va en segundo plano: se espera su fallo (el log) antes de mirar la espera.
    const renewalFails = async () => {
      const failed = watch.next("token renewal failed, current token kept");
      expect(await client.accessToken()).toBe(first);
      await failed;
    };
    clock.t += 480_000;

    // Un 429 con el token aún válido no se lanza, y su Retry-After (5 s) pesa más que el paso de 1 s.
    tokenFault = () =>
      Response.json(
        { error: "invalid_client", error_description: "too many failures" },
        { status: 429, headers: { "retry-after": "5" } },
      );
    await renewalFails();
    clock.t += 4_999;
    expect(await client.accessToken()).toBe(first);
    expect(statuses()).toEqual([200, 429]);
    clock.t += 1;

    tokenFault = () => new Response(null, { status: 503 });
    const steps = [2_000, 4_000, 8_000, 16_000, 30_000, 30_000];
    for (const waitMs of steps) {
      await renewalFails();
      clock.t += waitMs - 1;
      // Dentro de la espera: el token actual y ninguna petición (ni un timeout por llamada).
      expect(await client.accessToken()).toBe(first);
      expect(await client.accessToken()).toBe(first);
      clock.t += 1;
    }
    expect(statuses()).toEqual([200, 429, ...steps.map(() => 503)]);

    tokenFault = undefined;
    const obtained = watch.next("access token obtained");
    expect(await client.accessToken()).toBe(first);
    await obtained;
    const renewed = await client.accessToken();
    expect(renewed).not.toBe(first);
    expect(recorder.tokens().at(-1)).toMatchObject({ grantType: "refresh_token", status: 200 });

    // Sin token válido no hay a qué recurrir: cada llamada pide y el error se lanza, como siempre.
    clock.t += 600_000;
    tokenFault = () => new Response(null, { status: 503 });
    await expect(client.accessToken()).rejects.toBeInstanceOf(FarutechUnavailableError);
    await expect(client.accessToken()).rejects.toMatchObject({ code: "server_error", status: 503 });
    tokenFault = () =>
      Response.json({ error: "invalid_client" }, { status: 429, headers: { "retry-after": "5" } });
    await expect(client.accessToken()).rejects.toMatchObject({
      name: "FarutechUnavailableError",
      code: "rate_limited",
      status: 429,
      retryAfterSeconds: 5,
    });
    expect(statuses().slice(-3)).toEqual([503, 503, 429]);
    tokenFault = undefined;
    await client.close();
  });

  it("renews in the background while the token is still valid: a slow edge never stalls a call", async () => {
    const watch = watchedLogger();
    let hold = false;
    let renewalAsked: () => void = () => {};
    const asked = new Promise<void>((resolve) => {
      renewalAsked = resolve;
    });
    let answer: ((res: Response) => void) | undefined;
    const { client, clock, recorder } = testClient(
      // Sin timeout que venza durante la prueba: solo ella decide cuándo responde el edge.
      { logger: watch.logger, timeoutMs: 3_600_000 },
      {
        fault: (path) => {
          if (!hold || path !== "/oauth/token") return undefined;
          renewalAsked();
          return new Promise<Response>((resolve) => {
            answer = resolve;
          });
        },
      },
    );
    const first = await client.accessToken();
    hold = true;
    // Pasado el 80 % (24 s) y antes de que venza (30 s).
    clock.t += ACCESS_TOKEN_TTL_S * 900;
    // El edge no responde a la renovación hasta que la prueba lo suelta: antes, esto no volvía.
    expect(await client.accessToken()).toBe(first);
    expect(await client.ofrepHeaders()).toEqual({ Authorization: `Bearer ${first}` });
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    await asked;
    // Una sola renovación en vuelo para todas las llamadas.
    expect(recorder.tokens().map((c) => c.status)).toEqual([200, 0]);

    // Falla (503): sin rechazo sin manejar, el token sigue y la espera (1 s) rige.
    const failed = watch.next("token renewal failed, current token kept");
    answer?.(new Response(null, { status: 503 }));
    await failed;
    expect(await client.accessToken()).toBe(first);
    clock.t += 999;
    expect(await client.accessToken()).toBe(first);
    expect(recorder.tokens().map((c) => c.status)).toEqual([200, 503]);

    // Pasada la espera, otra renovación en segundo plano; su token sirve en cuanto llega.
    hold = false;
    clock.t += 1;
    const obtained = watch.next("access token obtained");
    expect(await client.accessToken()).toBe(first);
    await obtained;
    expect(await client.accessToken()).not.toBe(first);
    expect(recorder.tokens().map((c) => [c.grantType, c.status])).toEqual([
      ["client_credentials", 200],
      ["refresh_token", 503],
      ["refresh_token", 200],
    ]);
    await client.close();
  });

  it("peek(ctx) hands the token renewal in flight to waitUntil, not only the revalidation", async () => {
    // En workerd, lo que nadie pasa a ctx.waitUntil muere al responder: una renovación cortada
    // después de que el edge rotó el refresh token deja al SDK con uno ya usado. El edge real
    // retiene aquí cada refresh hasta que la prueba lo suelta.
    const held: (() => void)[] = [];
    const { client, clock, recorder } = testClient(
      { timeoutMs: 60_000 },
      {
        fault: async (path, request) => {
          if (path !== "/oauth/token" || (await grantOf(request)) !== "refresh_token") return;
          await new Promise<void>((resolve) => held.push(resolve));
          return fetch(request);
        },
      },
    );
    const release = async () => (await until(async () => held.shift()))();
    const first = await client.accessToken();
    expect(await client.snapshot()).toMatchObject({ source: "edge" });

    // Una llamada anterior de la misma petición lanzó la renovación; el snapshot está fresco y
    // peek(ctx) no revalida, pero la renovación va igual a waitUntil.
    clock.t += ACCESS_TOKEN_TTL_S * 900;
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    const request1 = fakeCtx();
    expect(client.peek(request1.scope)).toMatchObject({ source: "edge" });
    expect(await hasSettled(request1.all())).toBe(false);
    await release();
    await request1.all();
    const second = await client.accessToken();
    expect(second).not.toBe(first);

    // La revalidación que lanza peek(ctx) pide la renovación: waitUntil espera a las dos.
    clock.t += ACCESS_TOKEN_TTL_S * 900;
    const request2 = fakeCtx();
    client.peek(request2.scope);
    await client.refresh(); // la misma revalidación, ya terminada
    expect(await hasSettled(request2.all())).toBe(false);
    await release();
    await request2.all();
    expect(await client.accessToken()).not.toBe(second);
    expect(recorder.tokens().map((c) => [c.grantType, c.status])).toEqual([
      ["client_credentials", 200],
      ["refresh_token", 200],
      ["refresh_token", 200],
    ]);
    await client.close();
  });

  it("never presents a refresh token again after a renewal whose answer did not come", async () => {
    // El edge real recibe el refresh y lo rota, pero la respuesta no llega nunca (ni el abort del
    // timeout la termina): como cuando workerd corta la E/S de una petición que ya respondió.
    let rotated: string | undefined;
    const { client, clock, recorder } = testClient(
      { timeoutMs: 300 },
      {
        fault: async (path, request) => {
          if (path !== "/oauth/token" || rotated || (await grantOf(request)) !== "refresh_token") {
            return;
          }
          const res = await fetch(request.url, {
            method: "POST",
            headers: request.headers,
            body: await request.text(),
          });
          rotated = ((await res.json()) as { refresh_token?: string }).refresh_token;
          return new Promise<Response>(() => {});
        },
      },
    );
    const first = await client.accessToken();
    clock.t += ACCESS_TOKEN_TTL_S * 900;
    expect(await client.accessToken()).toBe(first);
    const lost = await until(async () => rotated);
    await sleep(400); // pasado timeoutMs: la renovación colgada se da por perdida
    clock.t += ACCESS_TOKEN_TTL_S * 1000;
    expect(await client.accessToken()).not.toBe(first);
    // Volver a presentar el refresh token sería un reuso: el edge revocaría la familia y daría la
    // alarma de robo. Se empieza de nuevo con client_credentials.
    expect(recorder.tokens().map((c) => [c.grantType, c.status])).toEqual([
      ["client_credentials", 200],
      ["refresh_token", 0],
      ["client_credentials", 200],
    ]);
    // close() revoca también esa familia: el refresh token rotado que nunca llegó ya no sirve.
    await client.close();
    const reuse = await fetch(
      `${edge.url}/oauth/token`,
      formPost({
        grant_type: "refresh_token",
        refresh_token: lost,
        client_id: tenant.id,
        client_secret: tenant.secret,
      }),
    );
    expect(reuse.status).toBe(400);
  });

  it("honours the Retry-After of a 503 from the token endpoint while it has no valid token", async () => {
    let down = true;
    const { client, clock, recorder } = testClient(
      {},
      {
        fault: (path) =>
          down && path === "/oauth/token"
            ? new Response(null, { status: 503, headers: { "retry-after": "30" } })
            : undefined,
      },
    );
    await expect(client.accessToken()).rejects.toMatchObject({
      name: "FarutechUnavailableError",
      code: "server_error",
      status: 503,
      retryAfterSeconds: 30,
    });
    // Dentro del Retry-After: el mismo error, sin una petición de token por llamada.
    clock.t += 29_999;
    await expect(client.accessToken()).rejects.toMatchObject({ code: "server_error", status: 503 });
    await expect(client.ofrepHeaders()).rejects.toBeInstanceOf(FarutechUnavailableError);
    expect(recorder.tokens().map((c) => c.status)).toEqual([503]);
    clock.t += 1;
    down = false;
    expect(await client.accessToken()).toEqual(expect.any(String));
    expect(recorder.tokens().map((c) => c.status)).toEqual([503, 200]);
    await client.close();
  });

  it("retries a 401 once per request and backs off while fresh tokens are rejected too", async () => {
    let reject = true;
    const { client, clock, recorder } = testClient(
      {},
      {
        // Un edge que rechaza todo token (p. ej. claves mal rotadas), sin tocar su configuración.
        fault: (path) =>
          reject && path === "/v1/entitlements"
            ? Response.json(
                // El código que el edge real pone en su problem+json; el SDK da invalid_token.
                { code: "unauthorized", detail: "Token signed with an unknown key" },
                { status: 401, headers: { "content-type": "application/problem+json" } },
              )
            : undefined,
      },
    );
    const url = `${edge.url}/v1/entitlements?instanceId=${norteId}`;
    const counts = () => [recorder.tokens().length, recorder.entitlements().length];

    // Primer 401: un token nuevo y un solo reintento.
    expect((await client.authorizedFetch(url)).status).toBe(401);
    expect(counts()).toEqual([2, 2]);
    // El token nuevo también fue rechazado: dentro de la espera (1 s) ni token nuevo ni reintento.
    expect((await client.authorizedFetch(url)).status).toBe(401);
    expect(counts()).toEqual([2, 3]);
    clock.t += 1_000;
    expect((await client.authorizedFetch(url)).status).toBe(401);
    expect(counts()).toEqual([3, 5]);
    // La espera crece a 2 s; la lectura de entitlements respeta la misma.
    clock.t += 1_999;
    expect((await client.authorizedFetch(url)).status).toBe(401);
    await expect(client.refresh()).rejects.toMatchObject({ code: "invalid_token", status: 401 });
    expect(counts()).toEqual([3, 7]);
    clock.t += 1;
    await expect(client.refresh()).rejects.toBeInstanceOf(FarutechAuthError);
    expect(counts()).toEqual([4, 9]);

    // Cuando el edge acepta el token, el siguiente 401 vuelve a reintentarse enseguida.
    reject = false;
    expect((await client.authorizedFetch(url)).status).toBe(200);
    reject = true;
    expect((await client.authorizedFetch(url)).status).toBe(401);
    expect(counts()).toEqual([5, 12]);
    await client.close();
  });

  it("treats a 429 from the token endpoint as unavailable: fallback, and waits for Retry-After", async () => {
    let locked = true;
    const { client, clock, recorder } = testClient(
      { fallback: { features: { DIGITAL_RECORDS: true }, limits: { max_users: 5 } } },
      {
        fault: (path) =>
          locked && path === "/oauth/token"
            ? Response.json(
                { error: "invalid_client", error_description: "Too many failed attempts" },
                { status: 429, headers: { "retry-after": "5" } },
              )
            : undefined,
      },
    );
    expect(await client.limit("max_users")).toBe(5);
    expect(await client.snapshot()).toMatchObject({ source: "fallback" });
    // Pasado maxAge se revalidaría, pero el Retry-After (5 s) manda: ninguna petición antes.
    clock.t += MAX_AGE_MS;
    expect(await client.limit("max_users")).toBe(5);
    clock.t += 3_000;
    expect(await client.limit("max_users")).toBe(5);
    expect(recorder.tokens().map((c) => c.status)).toEqual([429]);
    clock.t += 1_000;
    locked = false;
    expect(await client.limit("max_users")).toBe(100);
    expect(recorder.tokens().map((c) => c.status)).toEqual([429, 200]);
    await client.close();
  });

  it("keeps the token of the latest request when an abandoned one answers late", async () => {
    let slowOnce = true;
    let lateAnswered: (status: number) => void = () => {};
    const late = new Promise<number>((resolve) => {
      lateAnswered = resolve;
    });
    const { client } = testClient(
      { timeoutMs: 300 },
      {
        fault: (path, request) => {
          if (path !== "/oauth/token" || !slowOnce) return undefined;
          slowOnce = false;
          // Como en workerd, donde una petición abandonada no se aborta: responde igual, tarde.
          return new Promise<void>((resolve) => setTimeout(resolve, 700))
            .then(() => request.text())
            .then((body) => fetch(request.url, { method: "POST", headers: request.headers, body }))
            .then((res) => {
              lateAnswered(res.status);
              return res;
            });
        },
      },
    );
    await expect(client.accessToken()).rejects.toMatchObject({ code: "timeout" });
    const latest = await client.accessToken();
    // La primera petición, abandonada, llega ahora con su propio token (un 200 de verdad).
    expect(await late).toBe(200);
    // Lo que queda (leer ese cuerpo ya en memoria) no hace E/S: un respiro basta.
    await new Promise((r) => setTimeout(r, 50));
    expect(await client.accessToken()).toBe(latest);
    await client.close();
  });

  it("close waits for a token request in flight and revokes its refresh token", async () => {
    const { client, recorder } = testClient();
    const pending = client.accessToken();
    await client.close();
    await pending;
    const refreshToken = recorder.lastRefreshToken();
    if (!refreshToken) throw new Error("the edge issued no refresh token");
    const reuse = await fetch(
      `${edge.url}/oauth/token`,
      formPost({
        grant_type: "refresh_token",
        refresh_token: refreshToken,
        client_id: tenant.id,
        client_secret: tenant.secret,
      }),
    );
    expect(reuse.status).toBe(400);
    expect(await reuse.json()).toMatchObject({ error: "invalid_grant" });
  });

  it("rejects a wrong secret with FarutechAuthError, even with a fallback", async () => {
    const { client } = testClient({
      clientSecret: "wrong",
      fallback: { features: { DIGITAL_RECORDS: true } },
    });
    const error = await client.isEnabled("DIGITAL_RECORDS").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FarutechAuthError);
    expect(error).toMatchObject({ code: "invalid_client", status: 401 });
  });

  it("stops serving its snapshot, even through peek(), once its credentials are rejected", async () => {
    const revoked = await createApiClient(db.handle.db, {
      kind: "tenant",
      roles: ["tenant_app"],
      customerId: patitasId,
      instanceIds: [norteId],
    });
    const { client, clock } = testClient({
      clientId: revoked.id,
      clientSecret: revoked.secret,
      fallback: { features: { DIGITAL_RECORDS: true } },
    });
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    // El operador revoca el cliente; al renovar el token el edge responde invalid_client.
    await db.handle.db
      .update(apiClients)
      .set({ revokedAt: new Date() })
      .where(eq(apiClients.clientId, revoked.id));
    clock.t += ACCESS_TOKEN_TTL_S * 1000;
    await expect(client.isEnabled("DIGITAL_RECORDS")).rejects.toBeInstanceOf(FarutechAuthError);
    // Ni el snapshot viejo ni el fallback: un cliente revocado no sigue con datos de antes.
    expect(client.peek()).toBeUndefined();
    await expect(client.snapshot()).rejects.toBeInstanceOf(FarutechAuthError);
    // Tras la espera, peek() reintenta en segundo plano y sigue sin servir nada.
    clock.t += MAX_AGE_MS;
    expect(client.peek()).toBeUndefined();
    await new Promise((r) => setTimeout(r, 200));
    expect(client.peek()).toBeUndefined();
    await client.close();
  });

  it("keeps rejecting rejected credentials while the edge locks them out (429), asking again ever later", async () => {
    let lockedOut = false;
    const { client, clock, recorder } = testClient(
      { clientSecret: "wrong", fallback: { features: { DIGITAL_RECORDS: true } } },
      {
        // Como el bloqueo del edge tras 5 fallos del mismo client_id: 429 invalid_client.
        fault: (path) =>
          lockedOut && path === "/oauth/token"
            ? Response.json(
                { error: "invalid_client", error_description: "Too many failed attempts" },
                { status: 429, headers: { "retry-after": "60" } },
              )
            : undefined,
      },
    );
    const outcome = () =>
      client.isEnabled("DIGITAL_RECORDS").then(
        (v) => `served ${v}`,
        (e: unknown) => (e instanceof FarutechAuthError ? "auth error" : String(e)),
      );
    expect(await outcome()).toBe("auth error");
    lockedOut = true;
    const outcomes: string[] = [];
    for (let i = 0; i < 12; i++) {
      clock.t += 10_000;
      outcomes.push(await outcome());
      expect(client.peek()).toBeUndefined();
    }
    // Nunca el fallback: el 429 lo causan los propios fallos de estas credenciales.
    expect(new Set(outcomes)).toEqual(new Set(["auth error"]));
    // En 2 minutos, pocas peticiones de token (cada una cuenta para el bloqueo), no una por llamada.
    expect(recorder.tokens().map((c) => c.status)).toEqual([401, 429, 429]);
    await client.close();
  });

  it("does not keep asking for a token once the credentials are rejected, even while the old token is valid", async () => {
    const revoked = await createApiClient(db.handle.db, {
      kind: "tenant",
      roles: ["tenant_app"],
      customerId: patitasId,
      instanceIds: [norteId],
    });
    const watch = watchedLogger();
    const { client, clock, recorder } = testClient({
      clientId: revoked.id,
      clientSecret: revoked.secret,
      logger: watch.logger,
    });
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    const token = await client.accessToken();
    await db.handle.db
      .update(apiClients)
      .set({ revokedAt: new Date() })
      .where(eq(apiClients.clientId, revoked.id));
    // Pasado el punto de renovación (80 %) pero antes de que venza: la renovación, en segundo
    // plano, se rechaza; desde la llamada siguiente se lanza.
    clock.t += ACCESS_TOKEN_TTL_S * 850;
    const rejected = watch.next("token renewal rejected");
    expect(await client.accessToken()).toBe(token);
    await rejected;
    await expect(client.accessToken()).rejects.toBeInstanceOf(FarutechAuthError);
    for (let i = 0; i < 5; i++) {
      clock.t += 1_000;
      await expect(client.accessToken()).rejects.toBeInstanceOf(FarutechAuthError);
    }
    // Una sola petición rechazada (el refresh, con invalid_client), no una por llamada.
    expect(recorder.tokens().filter((c) => c.status !== 200)).toHaveLength(1);
    await client.close();
  });

  it("takes a 4xx without an OAuth error from the token endpoint (a proxy, a WAF) as unavailable, not as rejected credentials", async () => {
    let proxyDown = true;
    const { client, clock } = testClient(
      { fallback: { features: { DIGITAL_RECORDS: true }, limits: {} } },
      {
        fault: (path) =>
          proxyDown && path === "/oauth/token"
            ? new Response("<html>Not Found</html>", { status: 404 })
            : undefined,
      },
    );
    expect(await client.snapshot()).toMatchObject({ source: "fallback" });
    proxyDown = false;
    clock.t += 30_000;
    // Sin la espera de 15 s de un rechazo de credenciales: el edge de verdad responde ya.
    expect(await client.snapshot()).toMatchObject({ source: "edge" });
    await client.close();
  });

  it("authorizedFetch and ofrepHeaders carry a token the edge accepts", async () => {
    const { client } = testClient();
    const url = `${edge.url}/v1/entitlements?instanceId=${norteId}`;
    const viaFetch = await client.authorizedFetch(url);
    expect(viaFetch.status).toBe(200);
    const viaHeaders = await fetch(url, { headers: await client.ofrepHeaders() });
    expect(viaHeaders.status).toBe(200);
    expect(await viaHeaders.json()).toMatchObject({ instanceId: norteId });
    await client.close();
  });

  it("authorizedFetch sends the bearer token only to the edge's origin and resolves paths against edgeUrl", async () => {
    const { client } = testClient();
    // Un servidor ajeno que anota lo que le llega: el token no debe salir hacia él.
    const seen: (string | null)[] = [];
    const foreign = createServer((req, res) => {
      seen.push(req.headers.authorization ?? null);
      res.end("ok");
    });
    await new Promise<void>((resolve) => foreign.listen(0, "127.0.0.1", resolve));
    const port = (foreign.address() as AddressInfo).port;
    try {
      for (const target of [
        `http://127.0.0.1:${port}/v1/entitlements`,
        new URL(`http://127.0.0.1:${port}/x`),
        new Request(`http://127.0.0.1:${port}/y`),
      ]) {
        await expect(client.authorizedFetch(target)).rejects.toMatchObject({
          name: "FarutechError",
          code: "foreign_url",
        });
      }
      expect(seen).toEqual([]);
      // Una ruta relativa va al edge, con el token.
      const relative = await client.authorizedFetch(`/v1/entitlements?instanceId=${norteId}`);
      expect(relative.status).toBe(200);
      expect(await relative.json()).toMatchObject({ instanceId: norteId });
    } finally {
      foreign.close();
      await client.close();
    }
  });

  it("close revokes the refresh token and refuses further calls", async () => {
    const { client, recorder } = testClient();
    await client.isEnabled("DIGITAL_RECORDS");
    const refreshToken = recorder.lastRefreshToken();
    if (!refreshToken) throw new Error("the edge issued no refresh token");
    await client.close();
    const reuse = await fetch(
      `${edge.url}/oauth/token`,
      formPost({
        grant_type: "refresh_token",
        refresh_token: refreshToken,
        client_id: tenant.id,
        client_secret: tenant.secret,
      }),
    );
    expect(reuse.status).toBe(400);
    expect(await reuse.json()).toMatchObject({ error: "invalid_grant" });
    await expect(client.isEnabled("DIGITAL_RECORDS")).rejects.toMatchObject({ code: "closed" });
    await expect(client.isEnabled("DIGITAL_RECORDS")).rejects.toBeInstanceOf(FarutechError);
  });
});

describe("entitlements", () => {
  it("answers isEnabled and limit with the demo data", async () => {
    const { client } = testClient();
    const expected = expectedNorte();
    for (const [code, on] of Object.entries(expected.features)) {
      expect(await client.isEnabled(code)).toBe(on);
    }
    for (const [name, value] of Object.entries(expected.limits)) {
      expect(await client.limit(name)).toBe(value);
    }
    expect(await client.isEnabled("BATCH_CONTROL")).toBe(false);
    expect(await client.isEnabled("NO_SUCH_FEATURE")).toBe(false);
    expect(await client.limit("no_such_limit")).toBeUndefined();
    expect(await client.snapshot()).toMatchObject({
      source: "edge",
      stale: false,
      instanceId: norteId,
      productCode: "FARUTECH_VET",
      planCode: "VET_PROFESSIONAL",
      status: "active",
      ...expected,
    });
    expect(client.peek()).toMatchObject({ source: "edge", features: expected.features });
    await client.close();
  });

  it("reads an instance without subscription: planCode null and everything off", async () => {
    const database = db.handle.db;
    const instanceId = await insertInstance(database, {
      customerId: patitasId,
      productCode: "FARUTECH_VET",
    });
    const bare = await createApiClient(database, {
      kind: "tenant",
      roles: ["tenant_app"],
      customerId: patitasId,
      instanceIds: [instanceId],
    });
    const { client } = testClient({ clientId: bare.id, clientSecret: bare.secret, instanceId });
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(false);
    // En 0, no ausente: la app no cae en su valor por defecto.
    expect(await client.limit("max_users")).toBe(0);
    const snapshot = await client.snapshot();
    expect(snapshot).toMatchObject({
      source: "edge",
      stale: false,
      instanceId,
      productCode: "FARUTECH_VET",
      planCode: null,
      status: "no_subscription",
    });
    expect(snapshot.limits.max_users).toBe(0);
    expect(Object.values(snapshot.limits).every((n) => n === 0)).toBe(true);
    expect(Object.keys(snapshot.features)).toEqual(Object.keys(expectedNorte().features).sort());
    expect(Object.values(snapshot.features).every((on) => !on)).toBe(true);
    await client.close();
  });

  it("revalidates after maxAge with If-None-Match and keeps the snapshot on 304", async () => {
    const { client, clock, recorder } = testClient();
    const first = await client.snapshot();
    if (first.source !== "edge") throw new Error("expected an edge snapshot");
    clock.t += MAX_AGE_MS - 1;
    await client.snapshot();
    expect(recorder.entitlements()).toHaveLength(1);

    clock.t += 1;
    const [a, b] = await Promise.all([client.snapshot(), client.isEnabled("DIGITAL_RECORDS")]);
    expect(recorder.entitlements()).toEqual([
      expect.objectContaining({ status: 200, ifNoneMatch: null }),
      expect.objectContaining({ status: 304, ifNoneMatch: `"${first.version}"` }),
    ]);
    expect(b).toBe(true);
    expect(a).toEqual({ ...first, validatedAt: clock.t });
    expect(recorder.tokens()).toHaveLength(1);
    await client.close();
  });

  it("revalidates after maxAge even when the clock stepped back (NTP, a VM that resumed)", async () => {
    const { client, clock, recorder } = testClient();
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    clock.t -= 3_600_000;
    clock.t += 2 * MAX_AGE_MS;
    await client.isEnabled("DIGITAL_RECORDS");
    // Con la edad negativa tomada por "fresco", no volvía a preguntar en una hora.
    expect(recorder.calls.filter((c) => c.path === "/v1/entitlements")).toHaveLength(2);
    await client.close();
  });

  it("keeps the last snapshot through a backward clock step during an outage, and still drops it after maxStaleMs", async () => {
    let down = false;
    const maxStaleMs = 60_000;
    const { client, clock } = testClient(
      { maxStaleMs },
      {
        fault: (path) =>
          down && path === "/v1/entitlements"
            ? Promise.reject(new TypeError("fetch failed"))
            : undefined,
      },
    );
    expect(await client.snapshot()).toMatchObject({ source: "edge", stale: false });
    down = true;
    clock.t += 6_000;
    expect(await client.snapshot()).toMatchObject({ source: "edge", stale: true });
    // NTP retrasa el reloj un minuto: el snapshot sigue sin confirmar desde hace 6 s, no "-54 s".
    clock.t -= 60_000;
    expect(await client.snapshot()).toMatchObject({ source: "edge", stale: true });
    expect(client.peek()).toMatchObject({ source: "edge", stale: true });
    // El paso atrás tampoco le da más vida: maxStaleMs cuenta el tiempo que pasó de verdad.
    clock.t += maxStaleMs - 6_000;
    expect(await client.limit("max_users")).toBe(100);
    clock.t += 1;
    await expect(client.snapshot()).rejects.toMatchObject({
      name: "FarutechUnavailableError",
      code: "unreachable",
    });
    down = false;
    await client.close();
  });

  it("does not make app calls wait for an edge that stops answering while it has a snapshot, and waits for a hung revalidation only once", async () => {
    // La revalidación queda retenida hasta que la prueba la suelta, con un timeout de un minuto:
    // las llamadas solo pueden terminar sin esperarla (ni a su timeout) si sirven lo último.
    let blackhole = false;
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const { client, clock, recorder } = testClient(
      { timeoutMs: 60_000 },
      {
        fault: (path, request) =>
          blackhole && path === "/v1/entitlements" ? gate.then(() => fetch(request)) : undefined,
      },
    );
    try {
      expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
      blackhole = true;
      clock.t += MAX_AGE_MS;
      const calls = Promise.all(Array.from({ length: 20 }, () => client.snapshot()));
      // Tope de la prueba muy lejos de lo esperado (250 ms) y del timeout (60 s) que descarta.
      const snapshots = await Promise.race([
        calls,
        new Promise<undefined>((resolve) => setTimeout(resolve, 15_000, undefined)),
      ]);
      if (!snapshots) throw new Error("app calls waited for the hung revalidation");
      // Terminaron con la revalidación aún retenida: no la esperaron.
      expect(recorder.entitlements().map((c) => c.status)).toEqual([200, 0]);
      expect(snapshots.every((s) => s.source === "edge" && s.stale)).toBe(true);
      expect(snapshots.every((s) => s.features.DIGITAL_RECORDS === true)).toBe(true);
      // Las llamadas siguientes, una tras otra contra la misma carga colgada, ya no la esperan:
      // 8 esperas serían 2 s; ninguna, milisegundos.
      const started = performance.now();
      for (let i = 0; i < 8; i++) {
        expect(await client.snapshot()).toMatchObject({ source: "edge", stale: true });
      }
      expect(performance.now() - started).toBeLessThan(500);
      expect(recorder.entitlements().map((c) => c.status)).toEqual([200, 0]);
    } finally {
      // Suelta la revalidación: close() espera lo que esté en vuelo.
      open();
      await client.close();
    }
  });

  it("shows a database change after maxAge", async () => {
    const { client, clock, recorder } = testClient();
    expect(await client.limit("max_users")).toBe(100);
    expect(await client.isEnabled("BATCH_CONTROL")).toBe(false);
    const database = db.handle.db;
    const subscriptionId = await norteSubscriptionId(database);
    const maxUsers = and(
      eq(subscriptionFeatureOverrides.subscriptionId, subscriptionId),
      eq(subscriptionFeatureOverrides.limitName, "max_users"),
    );
    const batchControl = and(
      eq(subscriptionFeatureOverrides.subscriptionId, subscriptionId),
      eq(subscriptionFeatureOverrides.featureCode, "BATCH_CONTROL"),
      isNull(subscriptionFeatureOverrides.limitName),
    );
    const [disable] = await database
      .select()
      .from(subscriptionFeatureOverrides)
      .where(batchControl);
    if (!disable) throw new Error("demo override missing");
    await database.update(subscriptionFeatureOverrides).set({ value: 150 }).where(maxUsers);
    await database.delete(subscriptionFeatureOverrides).where(batchControl);
    try {
      // Dentro de maxAge se sirve el snapshot sin preguntar.
      expect(await client.limit("max_users")).toBe(100);
      clock.t += MAX_AGE_MS;
      expect(await client.limit("max_users")).toBe(150);
      expect(await client.isEnabled("BATCH_CONTROL")).toBe(true);
      expect(recorder.entitlements().map((c) => c.status)).toEqual([200, 200]);
    } finally {
      await database.update(subscriptionFeatureOverrides).set({ value: 100 }).where(maxUsers);
      await database.insert(subscriptionFeatureOverrides).values(disable);
      await client.close();
    }
  });

  it("serves the last snapshot as stale while the edge is down", async () => {
    const { client, clock, recorder } = testClient();
    const expected = expectedNorte();
    expect(await client.limit("max_users")).toBe(100);
    if (!edge.server) throw new Error("edge not running");
    await stopServer(edge.server);
    edge.server = undefined;
    try {
      clock.t += MAX_AGE_MS;
      expect(await client.limit("max_users")).toBe(100);
      expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
      expect(await client.snapshot()).toMatchObject({ source: "edge", stale: true, ...expected });
      expect(client.peek()).toMatchObject({ stale: true });
      // Un intento por maxAge, no uno por llamada.
      expect(recorder.entitlements()).toHaveLength(2);
      await expect(client.refresh()).rejects.toBeInstanceOf(FarutechUnavailableError);
      await expect(client.refresh()).rejects.toMatchObject({ code: "unreachable" });
    } finally {
      await edge.start();
    }
    clock.t += MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({ source: "edge", stale: false });
    await client.close();
  });

  it("stops serving the last snapshot after maxStaleMs without the edge: fallback or error", async () => {
    const { client, clock } = testClient({
      maxStaleMs: 3 * MAX_AGE_MS,
      fallback: { features: {}, limits: { max_users: 5 } },
    });
    const { client: bare, clock: bareClock } = testClient({ maxStaleMs: 3 * MAX_AGE_MS });
    expect(await client.limit("max_users")).toBe(100);
    expect(await bare.limit("max_users")).toBe(100);
    if (!edge.server) throw new Error("edge not running");
    await stopServer(edge.server);
    edge.server = undefined;
    try {
      clock.t += MAX_AGE_MS;
      bareClock.t += MAX_AGE_MS;
      expect(await client.limit("max_users")).toBe(100);
      expect(await bare.limit("max_users")).toBe(100);
      // Pasado maxStaleMs desde la última validación: lo que diga el snapshot ya no vale.
      clock.t += 3 * MAX_AGE_MS;
      bareClock.t += 3 * MAX_AGE_MS;
      expect(await client.limit("max_users")).toBe(5);
      expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(false);
      expect(await client.snapshot()).toMatchObject({ source: "fallback", stale: true });
      await expect(bare.isEnabled("DIGITAL_RECORDS")).rejects.toBeInstanceOf(
        FarutechUnavailableError,
      );
    } finally {
      await edge.start();
    }
    clock.t += MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({ source: "edge", stale: false });
    await client.close();
    await bare.close();
  });

  /** Pone a vet-norte a vencer en `inMs` (reloj real: el del edge) y devuelve cómo deshacerlo. */
  async function norteExpiresIn(inMs: number) {
    const database = db.handle.db;
    const subscriptionId = await norteSubscriptionId(database);
    const [before] = await database
      .select({ expiresAt: subscriptions.expiresAt })
      .from(subscriptions)
      .where(eq(subscriptions.id, subscriptionId));
    await database
      .update(subscriptions)
      .set({ expiresAt: new Date(Date.now() + inMs) })
      .where(eq(subscriptions.id, subscriptionId));
    return () =>
      database
        .update(subscriptions)
        .set({ expiresAt: before?.expiresAt ?? null })
        .where(eq(subscriptions.id, subscriptionId));
  }

  it("does not serve an active snapshot past the subscription's expiry while the edge is down", async () => {
    const restore = await norteExpiresIn(60_000);
    const { client, clock } = testClient({ fallback: { features: {}, limits: { max_users: 5 } } });
    const { client: bare, clock: bareClock } = testClient();
    try {
      expect(await client.snapshot()).toMatchObject({ status: "active", stale: false });
      expect(await bare.isEnabled("DIGITAL_RECORDS")).toBe(true);
      if (!edge.server) throw new Error("edge not running");
      await stopServer(edge.server);
      edge.server = undefined;
      try {
        // Dentro de maxStaleMs (1 h) y antes del vencimiento: lo último, stale.
        clock.t += 30_000;
        bareClock.t += 30_000;
        expect(await client.snapshot()).toMatchObject({ source: "edge", status: "active" });
        expect(await bare.limit("max_users")).toBe(100);
        // Vencida la suscripción (el edge lo dijo con x-entitlements-valid-for): ya no vale,
        // aunque falte casi una hora para maxStaleMs.
        clock.t += 31_000;
        bareClock.t += 31_000;
        expect(await client.snapshot()).toMatchObject({ source: "fallback", stale: true });
        expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(false);
        expect(client.peek()).toMatchObject({ source: "fallback" });
        await expect(bare.isEnabled("DIGITAL_RECORDS")).rejects.toBeInstanceOf(
          FarutechUnavailableError,
        );
        expect(bare.peek()).toBeUndefined();
      } finally {
        await edge.start();
      }
    } finally {
      await restore();
      await client.close();
      await bare.close();
    }
  });

  it("asks the edge again when the subscription's expiry passes, even within maxAge", async () => {
    const restore = await norteExpiresIn(1_500);
    const { client, clock, recorder } = testClient({ maxAgeMs: 600_000 });
    try {
      expect(await client.snapshot()).toMatchObject({ status: "active" });
      // El edge evalúa el vencimiento con su reloj (el real): se espera a que pase de verdad.
      await sleep(1_600);
      clock.t += 2_000;
      expect(await client.snapshot()).toMatchObject({ source: "edge", status: "expired" });
      expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(false);
      expect(recorder.entitlements().map((c) => c.status)).toEqual([200, 200]);
      // El documento vencido no cambia más por el reloj: maxAge vuelve a mandar.
      clock.t += 60_000;
      await client.snapshot();
      expect(recorder.entitlements()).toHaveLength(2);
    } finally {
      await restore();
      await client.close();
    }
  });

  /** La respuesta real del edge con las cabeceras que `edit` cambie. */
  async function edited(request: Request, edit: (headers: Headers) => void): Promise<Response> {
    const res = await fetch(request);
    const headers = new Headers(res.headers);
    edit(headers);
    return new Response(res.body, { status: res.status, headers });
  }

  it("keeps a known expiry when the edge answers 304 from an older copy that does not know it", async () => {
    const restore = await norteExpiresIn(60_000);
    // Tras la primera respuesta, el edge "pierde su base" y contesta con una copia cargada antes
    // de que la suscripción tuviera fin: mismo contenido (304) y sin x-entitlements-valid-for.
    let olderCopy = false;
    const fault = async (path: string, request: Request) => {
      if (!olderCopy || path !== "/v1/entitlements") return undefined;
      return edited(request, (headers) => {
        headers.set("x-entitlements-stale", "1");
        headers.delete("x-entitlements-valid-for");
      });
    };
    const { client, clock, recorder } = testClient(
      { fallback: { features: {}, limits: { max_users: 5 } } },
      { fault },
    );
    try {
      expect(await client.snapshot()).toMatchObject({ status: "active", stale: false });
      olderCopy = true;
      clock.t += 30_000;
      expect(await client.snapshot()).toMatchObject({ source: "edge", stale: true });
      expect(recorder.entitlements().map((c) => c.status)).toEqual([200, 304]);
      clock.t += 31_000;
      // Vencida: la copia (304, sin plazo) no la resucita. Fallback, y sin martillar al edge.
      expect(await client.snapshot()).toMatchObject({ source: "fallback" });
      expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(false);
      expect(client.peek()).toMatchObject({ source: "fallback" });
      expect(recorder.entitlements()).toHaveLength(3);
      await expect(client.refresh()).rejects.toMatchObject({ code: "lapsed" });
    } finally {
      await restore();
      await client.close();
    }
  });

  it("peek() waits for the edge, without the fallback, when the snapshot lapses with the edge up", async () => {
    const restore = await norteExpiresIn(1_500);
    const { client, clock } = testClient({
      maxAgeMs: 600_000,
      fallback: { features: { DIGITAL_RECORDS: true }, limits: {} },
    });
    try {
      expect(client.peek()).toBeUndefined();
      expect(await client.snapshot()).toMatchObject({ source: "edge", status: "active" });
      await sleep(1_600);
      clock.t += 2_000;
      const ctx = fakeCtx();
      // Venció y aún no se volvió a preguntar: ni lo vencido ni el fallback.
      expect(client.peek(ctx.scope)).toBeUndefined();
      await ctx.all();
      expect(client.peek()).toMatchObject({ source: "edge", status: "expired" });
    } finally {
      await restore();
      await client.close();
    }
  });

  it("reads an x-entitlements-valid-for of 0 as one second and an unreadable one as maxAge", async () => {
    const restore = await norteExpiresIn(60_000);
    let value = "0";
    const fault = (path: string, request: Request) =>
      path === "/v1/entitlements"
        ? edited(request, (headers) => headers.set("x-entitlements-valid-for", value))
        : undefined;
    const { client, recorder } = testClient({}, { fault });
    const { client: merged, clock: mergedClock } = testClient(
      { fallback: { features: {}, limits: { max_users: 5 } } },
      {
        fault: (path, request) =>
          path === "/v1/entitlements"
            ? edited(request, (headers) => headers.set("x-entitlements-valid-for", "60, 60"))
            : undefined,
      },
    );
    try {
      // Un 0 no deja un documento recién llegado vencido (ni una petición por llamada).
      expect(await client.snapshot()).toMatchObject({ source: "edge", status: "active" });
      expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
      expect(recorder.entitlements()).toHaveLength(1);
      value = "60";
      // "60, 60" (dos cabeceras juntadas) no es "nunca cambia": vale hasta la próxima revalidación.
      expect(await merged.limit("max_users")).toBe(100);
      if (!edge.server) throw new Error("edge not running");
      await stopServer(edge.server);
      edge.server = undefined;
      try {
        mergedClock.t += MAX_AGE_MS;
        expect(await merged.limit("max_users")).toBe(5);
      } finally {
        await edge.start();
      }
    } finally {
      await restore();
      await client.close();
      await merged.close();
    }
  });

  it("marks the snapshot stale when the edge answers from its own copy", async () => {
    if (!db.url) throw new Error("postgres url missing");
    // El mismo edge, en proceso y con su propia conexión: cerrarla es "la base del edge cayó",
    // y el edge responde con su copia (stale-if-error) y x-entitlements-stale.
    const ownDb = await createDb({ url: db.url });
    const app = await createNodeEdgeApp(edgeEnv, ownDb.db, silentLogger);
    const { client, clock } = testClient({
      edgeUrl: "http://edge.local",
      fetch: async (input, init) => app.request(new Request(input, init)),
    });
    expect(await client.snapshot()).toMatchObject({ source: "edge", stale: false });
    await ownDb.close();
    clock.t += MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({
      source: "edge",
      stale: true,
      ...expectedNorte(),
    });
    expect(await client.limit("max_users")).toBe(100);
    expect(client.peek()).toMatchObject({ stale: true });
  });

  it("does not count the edge's own stale copies as fresh: maxStaleMs still holds", async () => {
    let edgeStale = false;
    const tamper = {
      // El edge sin base responde 304 con su copia (x-entitlements-stale), una y otra vez.
      fault: (path: string) =>
        edgeStale && path === "/v1/entitlements"
          ? new Response(null, { status: 304, headers: { "x-entitlements-stale": "1" } })
          : undefined,
    };
    const maxStaleMs = 60_000;
    const withFallback = testClient(
      { maxStaleMs, fallback: { features: {}, limits: { max_users: 5 } } },
      tamper,
    );
    const bare = testClient({ maxStaleMs }, tamper);
    for (const { client } of [withFallback, bare]) {
      expect(await client.snapshot()).toMatchObject({ source: "edge", stale: false });
    }
    edgeStale = true;
    for (const { client, clock } of [withFallback, bare]) {
      const validatedAt = clock.t;
      clock.t += 30_000;
      expect(await client.snapshot()).toMatchObject({ source: "edge", stale: true, validatedAt });
      expect(await client.limit("max_users")).toBe(100);
      clock.t += 31_000;
    }
    expect(await withFallback.client.limit("max_users")).toBe(5);
    expect(withFallback.client.peek()).toMatchObject({ source: "fallback" });
    await expect(bare.client.snapshot()).rejects.toBeInstanceOf(FarutechUnavailableError);
    edgeStale = false;
    for (const { client, clock } of [withFallback, bare]) {
      clock.t += MAX_AGE_MS;
      expect(await client.snapshot()).toMatchObject({ source: "edge", stale: false });
      await client.close();
    }
  });

  it("reads only own keys: limit('constructor') is undefined, isEnabled('toString') false", async () => {
    const { client } = testClient();
    for (const key of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      expect(await client.limit(key), key).toBeUndefined();
      expect(await client.isEnabled(key), key).toBe(false);
    }
    await client.close();
  });

  it("peek() gives undefined before the first load, and the fallback only once a load failed", async () => {
    // El fallback de "Uso en diez líneas" con el patrón de Workers del README: la primera petición
    // de un isolate espera la carga en lugar de negar con el fallback.
    const fallback = { features: {}, limits: {} };
    const { client } = testClient({ fallback });
    const ctx = fakeCtx();
    const snapshot = client.peek(ctx.scope);
    expect(snapshot).toBeUndefined();
    const enabled = snapshot
      ? snapshot.features.DIGITAL_RECORDS === true
      : await client.isEnabled("DIGITAL_RECORDS");
    expect(enabled).toBe(true);
    await ctx.all();
    await client.close();

    // Con el edge caído: nada antes de preguntarle; el fallback cuando la carga falló.
    const down = testClient({ edgeUrl: `http://127.0.0.1:${await getPort()}`, fallback });
    expect(down.client.peek()).toBeUndefined();
    expect(await down.client.snapshot()).toMatchObject({ source: "fallback" });
    expect(down.client.peek()).toMatchObject({ source: "fallback", stale: true });
    await down.client.close();
  });

  it("takes what does not come from the edge on /v1/entitlements (a proxy's 404, a WAF's 403, a captive portal) as unavailable", async () => {
    let answer: (() => Response) | undefined;
    const html = (status: number) => () =>
      new Response("<html>Not here</html>", { status, headers: { "content-type": "text/html" } });
    const { client, clock } = testClient(
      {},
      { fault: (path) => (path === "/v1/entitlements" ? answer?.() : undefined) },
    );
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    const notEdge = [
      html(404),
      html(403),
      html(401),
      html(200),
      // JSON, pero no el problem+json del edge (un API gateway).
      () => Response.json({ message: "Not Found" }, { status: 404 }),
    ];
    for (const respond of notEdge) {
      answer = respond;
      const { status } = respond();
      clock.t += MAX_AGE_MS;
      expect(await client.snapshot()).toMatchObject({ source: "edge", stale: true });
      expect(client.peek()).toMatchObject({ source: "edge", stale: true });
      await expect(client.refresh()).rejects.toMatchObject({
        name: "FarutechUnavailableError",
        code: "server_error",
        status,
      });
    }
    answer = undefined;
    clock.t += MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({ source: "edge", stale: false });
    await client.close();

    // Sin snapshot: el fallback.
    const cold = testClient(
      { fallback: { features: { DIGITAL_RECORDS: true } } },
      { fault: (path) => (path === "/v1/entitlements" ? html(404)() : undefined) },
    );
    expect(await cold.client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    expect(await cold.client.snapshot()).toMatchObject({ source: "fallback" });
    await cold.client.close();

    // El 404 del edge de verdad (problem+json: la instancia no existe) sí se lanza, con fallback.
    const missing = randomUUID();
    const lost = await createApiClient(db.handle.db, {
      kind: "tenant",
      roles: ["tenant_app"],
      customerId: patitasId,
      instanceIds: [missing],
    });
    const orphan = testClient({
      clientId: lost.id,
      clientSecret: lost.secret,
      instanceId: missing,
      fallback: { features: { DIGITAL_RECORDS: true } },
    });
    await expect(orphan.client.isEnabled("DIGITAL_RECORDS")).rejects.toMatchObject({
      name: "FarutechError",
      code: "not_found",
      status: 404,
    });
    expect(orphan.client.peek()).toBeUndefined();
    await orphan.client.close();
  });

  it("without a snapshot and with the edge down, uses the fallback or throws", async () => {
    const deadEdge = `http://127.0.0.1:${await getPort()}`;
    const { client: withFallback } = testClient({
      edgeUrl: deadEdge,
      fallback: { features: { DIGITAL_RECORDS: true }, limits: { max_users: 5 } },
    });
    expect(await withFallback.isEnabled("DIGITAL_RECORDS")).toBe(true);
    expect(await withFallback.isEnabled("APPOINTMENTS_SCHEDULING")).toBe(false);
    expect(await withFallback.limit("max_users")).toBe(5);
    expect(await withFallback.limit("storage_gb")).toBeUndefined();
    expect(await withFallback.snapshot()).toEqual({
      source: "fallback",
      stale: true,
      instanceId: norteId,
      features: { DIGITAL_RECORDS: true },
      limits: { max_users: 5 },
    });

    const { client: bare } = testClient({ edgeUrl: deadEdge });
    const error = await bare.isEnabled("DIGITAL_RECORDS").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FarutechUnavailableError);
    expect(error).toMatchObject({ code: "unreachable", status: undefined });
    expect(bare.peek()).toBeUndefined();
  });

  it("treats a connection cut mid-body as the edge being unavailable: last snapshot, fallback, kept token", async () => {
    let cut = false;
    const { client, clock, recorder } = testClient(
      {},
      { fault: (path) => (cut && path === "/v1/entitlements" ? cutMidBody() : undefined) },
    );
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    cut = true;
    clock.t += MAX_AGE_MS;
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    expect(await client.snapshot()).toMatchObject({ source: "edge", stale: true });
    await expect(client.refresh()).rejects.toMatchObject({
      name: "FarutechUnavailableError",
      code: "unreachable",
    });
    expect(recorder.entitlements().length).toBeGreaterThanOrEqual(2);
    await client.close();

    // Sin snapshot previo: el fallback, no un bad_response.
    const fresh = testClient(
      { fallback: { features: { DIGITAL_RECORDS: false }, limits: {} } },
      { fault: (path) => (path === "/v1/entitlements" ? cutMidBody() : undefined) },
    );
    expect(await fresh.client.isEnabled("DIGITAL_RECORDS")).toBe(false);
    expect(await fresh.client.snapshot()).toMatchObject({ source: "fallback" });
    await fresh.client.close();

    // Una renovación de token cortada a medias conserva el token aún válido, con espera.
    let cutToken = false;
    const watch = watchedLogger();
    const tokens = testClient(
      { logger: watch.logger },
      { fault: (path) => (cutToken && path === "/oauth/token" ? cutMidBody() : undefined) },
    );
    const first = await tokens.client.accessToken();
    cutToken = true;
    tokens.clock.t += ACCESS_TOKEN_TTL_S * 1000 * 0.9;
    const failed = watch.next("token renewal failed, current token kept");
    expect(await tokens.client.accessToken()).toBe(first);
    await failed;
    expect(await tokens.client.accessToken()).toBe(first);
    // La primera y la cortada: dentro de la espera no se pide otra.
    expect(tokens.recorder.tokens()).toHaveLength(2);
    cutToken = false;
    await tokens.client.close();
  });

  it("applies the restrictions an edge's own stale copy shows, and never lets one lift a restriction", async () => {
    let edgeCopy: (() => Response) | undefined;
    const { client, clock, recorder } = testClient(
      {},
      { fault: (path) => (path === "/v1/entitlements" ? edgeCopy?.() : undefined) },
    );
    const confirmed = await client.refresh();
    expect(confirmed).toMatchObject({ status: "active", stale: false });
    const { source: _s, stale: _st, fetchedAt: _f, validatedAt, ...active } = confirmed;
    const suspended = {
      ...active,
      status: "suspended",
      version: "suspended",
      features: Object.fromEntries(Object.keys(active.features).map((code) => [code, false])),
      limits: Object.fromEntries(Object.keys(active.limits).map((name) => [name, 0])),
    };
    const staleCopy = (body: object, etag: string) => () =>
      Response.json(body, { headers: { etag: `"${etag}"`, "x-entitlements-stale": "1" } });

    // Un isolate sin base que ya había cargado la suspensión: su copia es lo único que la muestra.
    edgeCopy = staleCopy(suspended, "suspended");
    clock.t += MAX_AGE_MS;
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(false);
    expect(await client.limit("max_users")).toBe(0);
    expect(await client.snapshot()).toMatchObject({
      status: "suspended",
      stale: true,
      validatedAt,
    });
    // Otro isolate con una copia aún más vieja (activa) no la deshace.
    edgeCopy = staleCopy(active, "older");
    clock.t += MAX_AGE_MS;
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(false);
    expect(await client.snapshot()).toMatchObject({
      status: "suspended",
      stale: true,
      validatedAt,
    });
    // Solo una respuesta fresca la levanta (el edge real: la instancia sigue activa).
    edgeCopy = undefined;
    clock.t += MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({
      ...active,
      stale: false,
      validatedAt: clock.t,
    });

    // Una suspensión confirmada fresca tampoco la deshace una copia vieja.
    edgeCopy = () => Response.json(suspended, { headers: { etag: '"suspended"' } });
    clock.t += MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({ status: "suspended", stale: false });
    edgeCopy = staleCopy(active, "older");
    clock.t += MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({ status: "suspended", stale: true });
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(false);
    edgeCopy = undefined;
    clock.t += MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({ ...active, stale: false });

    // Una copia que apaga una feature pero enciende otra y sube un límite: sin saber cuál es más
    // nueva, vale lo más restrictivo de cada una, y la siguiente respuesta fresca llega entera.
    edgeCopy = staleCopy(
      {
        ...active,
        version: "mixed",
        features: { ...active.features, DIGITAL_RECORDS: false, BATCH_CONTROL: true },
        limits: { ...active.limits, max_users: 500 },
      },
      "mixed",
    );
    clock.t += MAX_AGE_MS;
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(false);
    expect(await client.isEnabled("BATCH_CONTROL")).toBe(false);
    expect(await client.limit("max_users")).toBe(100);
    edgeCopy = undefined;
    clock.t += MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({ ...active, ...expectedNorte(), stale: false });
    expect(recorder.entitlements().at(-1)).toMatchObject({ status: 200, ifNoneMatch: null });
    await client.close();
  });

  it("waits as long as Retry-After asks before asking the edge again", async () => {
    let limited = true;
    const { client, clock, recorder } = testClient(
      { fallback: { features: {}, limits: {} } },
      {
        fault: (path) =>
          limited && path === "/v1/entitlements"
            ? Response.json({}, { status: 429, headers: { "retry-after": "60" } })
            : undefined,
      },
    );
    expect(await client.snapshot()).toMatchObject({ source: "fallback" });
    const asked = recorder.entitlements().length;
    // maxAgeMs ya pasó varias veces, pero el edge pidió 60 s.
    clock.t += 10 * MAX_AGE_MS;
    expect(await client.snapshot()).toMatchObject({ source: "fallback" });
    expect(recorder.entitlements()).toHaveLength(asked);
    limited = false;
    clock.t += 60_000;
    expect(await client.snapshot()).toMatchObject({ source: "edge" });
    await client.close();

    // Un Retry-After enorme tiene tope (5 min): el cliente vuelve a preguntar cuando el edge vuelve.
    let huge = true;
    const capped = testClient(
      { fallback: { features: {}, limits: {} }, maxStaleMs: 3_600_000 },
      {
        fault: (path) =>
          huge && path === "/v1/entitlements"
            ? new Response(null, { status: 503, headers: { "retry-after": "86400" } })
            : undefined,
      },
    );
    expect(await capped.client.snapshot()).toMatchObject({ source: "fallback" });
    huge = false;
    capped.clock.t += 300_000;
    expect(await capped.client.snapshot()).toMatchObject({ source: "edge", stale: false });
    await capped.client.close();

    // Un 503 también trae su Retry-After, en segundos o como fecha HTTP.
    const at = new Date(Date.now() + 120_000).toUTCString();
    const failing = testClient(
      {},
      {
        fault: (path) =>
          path === "/oauth/token"
            ? new Response(null, { status: 503, headers: { "retry-after": at } })
            : undefined,
      },
    );
    const error = await failing.client.accessToken().catch((e: unknown) => e);
    expect(error).toMatchObject({ name: "FarutechUnavailableError", code: "server_error" });
    const seconds = (error as FarutechUnavailableError).retryAfterSeconds ?? 0;
    expect(seconds).toBeGreaterThan(100);
    expect(seconds).toBeLessThanOrEqual(120);
    await failing.client.close();
  });

  it("gives the app its own copy of the snapshot", async () => {
    const { client } = testClient();
    const mine = await client.snapshot();
    mine.features.DIGITAL_RECORDS = false;
    mine.limits.max_users = 1;
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    expect(await client.limit("max_users")).toBe(100);
    await client.close();
  });

  it("bounds authorizedFetch by timeoutMs like every other request, with a typed error", async () => {
    const { client } = testClient(
      { timeoutMs: 300 },
      {
        fault: (path, request) => (path.startsWith("/ofrep/") ? neverAnswers(request) : undefined),
      },
    );
    const url = `${edge.url}/ofrep/v1/evaluate/flags`;
    const error = await client
      .authorizedFetch(url, { method: "POST", body: "{}" })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ name: "FarutechUnavailableError", code: "timeout" });
    // Un abort de quien llama le llega como su propio error, no como uno del SDK.
    const mine = new AbortController();
    const aborted = client.authorizedFetch(url, {
      method: "POST",
      body: "{}",
      signal: mine.signal,
    });
    mine.abort(new Error("caller gave up"));
    await expect(aborted).rejects.toThrow("caller gave up");
    await client.close();
  });

  it("refuses entitlements of another instance (a misrouted proxy or cache) and an edgeUrl that is not http(s)", async () => {
    const { client } = testClient(
      { fallback: { features: { DIGITAL_RECORDS: true }, limits: {} } },
      {
        fault: (path, request) =>
          path === "/v1/entitlements"
            ? fetch(request)
                .then((res) => res.json() as Promise<Record<string, unknown>>)
                .then((real) => Response.json({ ...real, instanceId: otherInstanceId }))
            : undefined,
      },
    );
    await expect(client.isEnabled("DIGITAL_RECORDS")).rejects.toMatchObject({
      code: "bad_response",
    });
    expect(client.peek()).toBeUndefined();
    await client.close();
    for (const edgeUrl of ["edge.farutech.com", "ftp://edge.farutech.com"]) {
      expect(() => testClient({ edgeUrl })).toThrow(
        expect.objectContaining({ code: "invalid_options" }),
      );
    }
  });

  it("accepts its instance id in upper case, as the edge does", async () => {
    const { client } = testClient({ instanceId: norteId.toUpperCase() });
    expect(await client.isEnabled("DIGITAL_RECORDS")).toBe(true);
    await client.close();
  });

  it("throws FarutechForbiddenError for an instance the client may not read", async () => {
    const { client } = testClient({
      instanceId: otherInstanceId,
      fallback: { features: {}, limits: {} },
    });
    const error = await client.isEnabled("DIGITAL_RECORDS").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FarutechForbiddenError);
    expect(error).toMatchObject({ code: "forbidden", status: 403 });
    await client.close();
  });
});

// Lo que recibe una app hija que instala el paquete: JavaScript y tipos en dist/, sin TypeScript
// ni bundler. Se compila como `npm pack` (prepack) y se usa desde `node` a secas.
describe("as a published package in plain Node", () => {
  const out = mkdtempSync(join(tmpdir(), "farutech-sdk-dist-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("runs from its compiled dist with node alone, and type-checks for a NodeNext app", async () => {
    const sdkDir = fileURLToPath(new URL(".", import.meta.url));
    const tsc = (args: string[]) =>
      execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), ...args], {
        encoding: "utf8",
      });
    tsc(["-p", join(sdkDir, "tsconfig.build.json"), "--outDir", join(out, "dist")]);
    const manifest = JSON.parse(readFileSync(join(sdkDir, "package.json"), "utf8")) as {
      exports: { ".": { import: string; types: string } };
    };
    writeFileSync(join(out, "package.json"), JSON.stringify({ ...manifest, name: "sdk-dist" }));
    expect(existsSync(join(out, manifest.exports["."].import))).toBe(true);
    expect(existsSync(join(out, manifest.exports["."].types))).toBe(true);

    const app = `
      import { createFarutechClient } from ${JSON.stringify(join(out, manifest.exports["."].import))};
      const farutech = createFarutechClient({
        edgeUrl: ${JSON.stringify(edge.url)},
        clientId: ${JSON.stringify(tenant.id)},
        clientSecret: ${JSON.stringify(tenant.secret)},
        instanceId: ${JSON.stringify(norteId)},
      });
      const on = await farutech.isEnabled("DIGITAL_RECORDS");
      const users = await farutech.limit("max_users");
      await farutech.close();
      console.log(JSON.stringify({ on, users }));
    `;
    // Asíncrono: el edge de la prueba corre en este mismo proceso y debe poder responder.
    const run = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", app], {
      encoding: "utf8",
    });
    expect(JSON.parse(run.stdout)).toEqual({ on: true, users: 100 });

    // Una app TypeScript con module/moduleResolution NodeNext (lo de Node) compila contra los tipos.
    writeFileSync(
      join(out, "consumer.ts"),
      `import { createFarutechClient } from "./dist/index.js";
       const c = createFarutechClient({ edgeUrl: "http://e", clientId: "a", clientSecret: "b", instanceId: "i" });
       export const enabled: Promise<boolean> = c.isEnabled("X");\n`,
    );
    tsc([
      "--noEmit",
      "--strict",
      "--module",
      "nodenext",
      "--moduleResolution",
      "nodenext",
      "--target",
      "es2022",
      "--types",
      "node",
      "--typeRoots",
      fileURLToPath(new URL("../node_modules/@types", import.meta.url)),
      join(out, "consumer.ts"),
    ]);
  }, 60_000);
});

describe("in workerd", () => {
  /**
   * Un edge de mentira cuyas respuestas de /v1/entitlements, con `hold`, quedan retenidas hasta
   * que la prueba las suelta: el orden de los hechos lo decide la prueba, no los relojes. Su
   * /oauth/token rota los refresh tokens como el real y anota cada petición.
   */
  async function heldEdge() {
    let version = 0;
    let issued = 0;
    const used = new Set<string>();
    const state = {
      hold: false,
      held: [] as { version: string; release: () => void; released: boolean }[],
      tokenTtlS: 300,
      /** Cuánto tarda en responder un refresh ya rotado (firmar, escribir en la base). */
      rotationMs: 0,
      tokens: [] as { grant: string; at: number; answered: boolean; reused: boolean }[],
    };
    const fake = new Hono();
    fake.post("/oauth/token", async (c) => {
      const form = new URLSearchParams(await c.req.text());
      const presented = form.get("refresh_token");
      const entry = {
        grant: presented ? `refresh ${presented}` : (form.get("grant_type") ?? ""),
        at: Date.now(),
        answered: false,
        reused: presented !== null && used.has(presented),
      };
      state.tokens.push(entry);
      // Como el edge real: rota el refresh token al recibirlo, y uno ya usado es un reuso.
      if (entry.reused) return c.json({ error: "invalid_grant" }, 400);
      if (presented) {
        used.add(presented);
        await sleep(state.rotationMs);
      }
      issued += 1;
      entry.answered = true;
      return c.json({
        access_token: `tok${issued}`,
        token_type: "Bearer",
        expires_in: state.tokenTtlS,
        refresh_token: `rt${issued}`,
      });
    });
    fake.get("/v1/entitlements", async (c) => {
      version += 1;
      const current = `v${version}`;
      if (state.hold) {
        await new Promise<void>((resolve) => {
          const entry = {
            version: current,
            released: false,
            release: () => {
              entry.released = true;
              resolve();
            },
          };
          state.held.push(entry);
        });
      }
      return c.json(
        {
          instanceId: norteId,
          productCode: "P",
          planCode: "X",
          status: "active",
          features: { A: true },
          limits: {},
          version: current,
        },
        200,
        { etag: `"${current}"` },
      );
    });
    const port = await getPort();
    const server = await new Promise<Server>((resolve) => {
      const s = serve({ fetch: fake.fetch, port, hostname: "127.0.0.1" }, () =>
        resolve(s as Server),
      ) as Server;
    });
    return {
      state,
      url: `http://127.0.0.1:${port}`,
      /** La petición retenida que sigue sin soltar, en cuanto llega al edge. */
      pending: () => until(async () => state.held.find((h) => !h.released)),
      async stop() {
        for (const h of state.held) h.release();
        await stopServer(server);
      },
    };
  }

  /** El worker de sonda con el SDK, contra `edgeUrl`, con maxAge de 100 ms y ese timeout. */
  async function probe(edgeUrl: string, timeoutMs: number) {
    const worker = await unstable_dev(
      fileURLToPath(new URL("./testing/worker.ts", import.meta.url)),
      {
        config: fileURLToPath(new URL("./testing/wrangler.toml", import.meta.url)),
        vars: {
          EDGE_URL: edgeUrl,
          CLIENT_ID: "c",
          CLIENT_SECRET: "s",
          INSTANCE_ID: norteId,
          MAX_AGE_MS: "100",
          TIMEOUT_MS: String(timeoutMs),
        },
        ip: "127.0.0.1",
        persist: false,
        logLevel: "error",
        experimental: { disableExperimentalWarning: true, testMode: true },
      },
    );
    // Tope de cada petición muy por encima de lo esperado (ms) y muy por debajo del timeout largo.
    const read = async (path: string) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const res = await Promise.race([
        worker.fetch(path),
        new Promise<undefined>((resolve) => {
          timer = setTimeout(resolve, 15_000, undefined);
        }),
      ]).finally(() => clearTimeout(timer));
      if (!res) throw new Error(`${path} hung`);
      return (await res.json()) as { version: string | null };
    };
    return { worker, read };
  }

  const versionNumber = (v: string | null | undefined) => Number(v?.slice(1) ?? 0);

  it("peek() with ctx keeps revalidating after the response; a later request does not wait on a load its request abandoned", async () => {
    const edgeServer = await heldEdge();
    // Timeout de un minuto: nada aquí puede pasar por vencerlo; solo por el orden de los hechos.
    const { worker, read } = await probe(edgeServer.url, 60_000);
    try {
      expect(await read("/snapshot")).toEqual({ version: "v1" });
      await sleep(300); // pasado maxAge (100 ms): la siguiente lectura revalida

      // Con ctx.waitUntil: la petición responde con la carga aún retenida, y al soltarla se aplica.
      edgeServer.state.hold = true;
      expect(await read("/peek?ctx")).toEqual({ version: "v1" });
      const background = await edgeServer.pending();
      expect(background.version).toBe("v2");
      background.release();
      // Las cargas que lancen estas lecturas quedan retenidas: solo la de ctx puede traer v2.
      await until(async () => ((await read("/peek")).version === "v2" ? true : undefined));

      // Sin ctx: la carga muere con la petición (aquí además retenida para siempre). La petición
      // siguiente la espera solo un momento y sirve lo último, con la carga aún sin responder.
      await sleep(300);
      expect(await read("/peek")).toEqual({ version: "v2" });
      const abandoned = await edgeServer.pending();
      expect(versionNumber(abandoned.version)).toBeGreaterThan(2);
      expect(await read("/snapshot")).toEqual({ version: "v2" });
      expect(abandoned.released).toBe(false);
    } finally {
      await worker.stop();
      await edgeServer.stop();
    }
  }, 90_000);

  it("peek() without ctx: once the abandoned load's timeout passes, another load brings what is new", async () => {
    const edgeServer = await heldEdge();
    const { worker, read } = await probe(edgeServer.url, 2_000);
    try {
      expect(await read("/snapshot")).toEqual({ version: "v1" });
      await sleep(300);
      edgeServer.state.hold = true;
      expect(await read("/peek")).toEqual({ version: "v1" });
      // La carga abandonada nunca responde: solo su timeout (2 s) deja lanzar otra.
      const abandoned = await edgeServer.pending();
      edgeServer.state.hold = false;
      // Cada lectura espera a la abandonada solo un momento; pasado su timeout, otra carga trae
      // una versión posterior mientras la abandonada sigue sin responder.
      await until(async () => {
        const { version } = await read("/snapshot");
        return versionNumber(version) > versionNumber(abandoned.version) ? version : undefined;
      }, 20_000);
      expect(abandoned.released).toBe(false);
    } finally {
      await worker.stop();
      await edgeServer.stop();
    }
  }, 90_000);

  it("peek(ctx) lets a token renewal finish after the response; a renewal cut without ctx never makes the SDK present its refresh token again", async () => {
    const edgeServer = await heldEdge();
    // Renueva a los 4,8 s y vence a los 6 s. La renovación responde 400 ms después de rotar: más
    // tarde que la petición del worker que la lanzó.
    edgeServer.state.tokenTtlS = 6;
    edgeServer.state.rotationMs = 400;
    const { tokens } = edgeServer.state;
    const { worker, read } = await probe(edgeServer.url, 1_500);
    const sleepUntil = (at: number) => sleep(Math.max(0, at - Date.now()));
    try {
      await read("/snapshot");
      // Pasado el 80 %: peek(ctx) revalida y la renovación con rt1 va en segundo plano. Con
      // ctx.waitUntil termina después de responder y el SDK se queda con rt2.
      await sleepUntil((tokens[0]?.at ?? 0) + 5_200);
      await read("/peek?ctx");
      await until(async () => tokens[1]?.answered || undefined);
      // Sin ctx (snapshot()): la renovación con rt2 muere con la petición, ya rotada en el edge.
      await sleepUntil((tokens[1]?.at ?? 0) + 5_200);
      await read("/snapshot");
      // Vencido el token y perdida la renovación (timeout de 1,5 s), el SDK pide otro: con
      // client_credentials, no con rt2, que el edge tomaría por robado.
      await sleepUntil((tokens[1]?.at ?? 0) + 7_200);
      await read("/snapshot");
      expect(tokens.map((t) => t.grant)).toEqual([
        "client_credentials",
        "refresh rt1",
        "refresh rt2",
        "client_credentials",
      ]);
      expect(tokens.filter((t) => t.reused)).toEqual([]);
    } finally {
      await worker.stop();
      await edgeServer.stop();
    }
  }, 90_000);

  it("runs inside workerd without nodejs_compat and keeps its token between requests", async () => {
    const probe = await createApiClient(db.handle.db, {
      kind: "tenant",
      roles: ["tenant_app"],
      customerId: patitasId,
      instanceIds: [norteId],
    });
    const worker = await unstable_dev(
      fileURLToPath(new URL("./testing/worker.ts", import.meta.url)),
      {
        config: fileURLToPath(new URL("./testing/wrangler.toml", import.meta.url)),
        vars: {
          EDGE_URL: edge.url,
          CLIENT_ID: probe.id,
          CLIENT_SECRET: probe.secret,
          INSTANCE_ID: norteId,
        },
        ip: "127.0.0.1",
        persist: false,
        logLevel: "error",
        experimental: { disableExperimentalWarning: true, testMode: true },
      },
    );
    try {
      // El ejemplo del README: la primera petición de un isolate nuevo (sin snapshot aún) pasa.
      const gate = await worker.fetch("/gate?feature=DIGITAL_RECORDS");
      expect(gate.status).toBe(200);
      expect((await worker.fetch("/gate?feature=BATCH_CONTROL")).status).toBe(403);
      const first = await worker.fetch("/?feature=DIGITAL_RECORDS&limit=max_users");
      expect(await first.json()).toMatchObject({
        enabled: true,
        limit: 100,
        snapshot: {
          source: "edge",
          stale: false,
          instanceId: norteId,
          planCode: "VET_PROFESSIONAL",
        },
      });
      const second = await worker.fetch("/?feature=BATCH_CONTROL&limit=storage_gb");
      expect(await second.json()).toMatchObject({ enabled: false, limit: 50 });
      // Cada client_credentials deja un refresh token: uno solo significa un solo token pedido.
      const issued = await db.handle.db
        .select()
        .from(refreshTokens)
        .where(eq(refreshTokens.clientId, probe.id));
      expect(issued).toHaveLength(1);
    } finally {
      await worker.stop();
    }
  }, 60_000);
});
