import { eq } from "drizzle-orm";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subscriptions, tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { type RunningWsProxy, startWsProxy } from "../infra/wsproxy/wsproxy";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import {
  bundleEdge,
  EDGE_COMPATIBILITY_DATE,
  type EdgeTestSigning,
  edgeTestSigning,
  type WorkerBundle,
} from "../test/support/edge";
import { expectProblem } from "../test/support/http";

// El segundo nivel de la cache (Cache API) es lo que comparten los isolates de un mismo colo.
// Aquí dos workers de Miniflare con el MISMO bundle del edge son dos isolates de workerd con la
// misma `caches.default`: lo que carga uno lo sirve el otro aunque la base ya no responda.
const ISSUER = "http://edge.test";

type Isolate = "isolate-a" | "isolate-b";

let db: TestDatabase;
let bundle: WorkerBundle;
let signing: EdgeTestSigning;
let token: string;
let instances: { id: string; instanceCode: string }[];

beforeAll(async () => {
  db = await createPostgresTestDatabase();
  await seedDemo(db.handle.db);
  instances = await db.handle.db
    .select({ id: tenantInstances.id, instanceCode: tenantInstances.instanceCode })
    .from(tenantInstances)
    .where(eq(tenantInstances.status, "active"));
  signing = await edgeTestSigning("cache-api-test", ISSUER);
  token = await signing.sign();
  bundle = bundleEdge();
}, 120_000);

afterAll(async () => {
  bundle?.remove();
  await db?.drop();
});

/**
 * Dos isolates con la misma Cache API que llegan a Postgres por su propio wsproxy. Con `otherStage`,
 * isolate-b es otro despliegue (staging) en la misma zona: otro issuer y otras claves.
 */
async function isolatePair(
  otherStage?: EdgeTestSigning,
): Promise<{ mf: Miniflare; proxy: RunningWsProxy }> {
  if (!db.url) throw new Error("postgres url missing");
  const proxy = await startWsProxy();
  const isolate = (name: Isolate) => ({
    name,
    modules: true,
    scriptPath: bundle.script,
    modulesRoot: bundle.dir,
    compatibilityDate: EDGE_COMPATIBILITY_DATE,
    bindings: {
      DATABASE_URL: db.edgeUrl ?? "",
      NEON_WSPROXY: proxy.url,
      ...(name === "isolate-b" && otherStage ? otherStage.env : signing.env),
      AUTH_AUDIENCE: "farutech-orchestrator",
      LOG_LEVEL: "silent",
    },
  });
  const mf = new Miniflare({
    workers: [isolate("isolate-a"), isolate("isolate-b")],
    host: "127.0.0.1",
  });
  await mf.ready;
  return { mf, proxy };
}

async function read(mf: Miniflare, isolate: Isolate, instanceId: string, bearer = token) {
  // Los tipos de Miniflare describen el Fetcher de workerd; en Node es un fetch normal.
  const worker = (await mf.getWorker(isolate)) as unknown as {
    fetch(url: string, init: RequestInit): Promise<Response>;
  };
  const res = await worker.fetch(`http://edge.test/v1/entitlements?instanceId=${instanceId}`, {
    headers: { authorization: `Bearer ${bearer}` },
  });
  return {
    status: res.status,
    headers: res.headers,
    body: (await res.json()) as unknown,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Cache API tier inside workerd", () => {
  it("serves what another isolate loaded when the database is unreachable", async () => {
    const [loaded, neverLoaded] = instances;
    if (!loaded || !neverLoaded) throw new Error("demo needs two active instances");
    const { mf, proxy } = await isolatePair();
    try {
      const fromOrigin = await read(mf, "isolate-a", loaded.id);
      expect(fromOrigin.status).toBe(200);
      const etag = fromOrigin.headers.get("etag");
      expect(etag).toBeTruthy();

      // Sin base para nadie: lo único que puede responder ya es la cache.
      await proxy.close();

      const fromShared = await read(mf, "isolate-b", loaded.id);
      expect(fromShared.status).toBe(200);
      expect(fromShared.headers.get("etag")).toBe(etag);
      expect(fromShared.body).toEqual(fromOrigin.body);

      // Control: una instancia que ningún isolate cargó no está en la cache y no se inventa.
      const missing = await read(mf, "isolate-b", neverLoaded.id);
      expectProblem(missing, 503, "unavailable");
    } finally {
      await mf.dispose();
      await proxy.close();
    }
  }, 60_000);

  it("does not serve one deployment's entries to another deployment on the same zone", async () => {
    const [loaded] = instances;
    if (!loaded) throw new Error("demo needs an active instance");
    const staging = await edgeTestSigning("cache-api-staging", "http://staging.edge.test");
    const { mf, proxy } = await isolatePair(staging);
    try {
      expect((await read(mf, "isolate-a", loaded.id)).status).toBe(200);
      await proxy.close();
      // Mismo id de instancia (p. ej. la misma demo en ambos), otra base: nada que compartir.
      const other = await read(mf, "isolate-b", loaded.id, await staging.sign());
      expectProblem(other, 503, "unavailable");
    } finally {
      await mf.dispose();
      await proxy.close();
    }
  }, 60_000);

  it("what another isolate loaded as active is served expired once expiresAt passes", async () => {
    const [warm, , loaded] = instances;
    if (!warm || !loaded) throw new Error("demo needs three active instances");
    const { mf, proxy } = await isolatePair();
    try {
      // Primera lectura de isolate-a (lenta) antes de fijar el vencimiento.
      expect((await read(mf, "isolate-a", warm.id)).status).toBe(200);
      // Margen amplio: la escritura y la primera lectura por el wsproxy caben antes del vencimiento
      // también en una máquina cargada (con 1,5 s no siempre cabían).
      const expiresAt = Date.now() + 5_000;
      await db.handle.db
        .update(subscriptions)
        .set({ expiresAt: new Date(expiresAt) })
        .where(eq(subscriptions.tenantInstanceId, loaded.id));
      const fromOrigin = await read(mf, "isolate-a", loaded.id);
      expect(fromOrigin.body).toMatchObject({ status: "active" });
      expect(Date.now()).toBeLessThan(expiresAt);

      await proxy.close();
      await sleep(Math.max(0, expiresAt - Date.now()) + 200);

      // isolate-b nunca la cargó: solo la tiene por la Cache API, y aun así ya venció.
      const fromShared = await read(mf, "isolate-b", loaded.id);
      expect(fromShared.status).toBe(200);
      expect(fromShared.body).toMatchObject({ status: "expired" });
      expect(fromShared.headers.get("etag")).not.toBe(fromOrigin.headers.get("etag"));
    } finally {
      await mf.dispose();
      await proxy.close();
    }
  }, 60_000);
});
