import { eq } from "drizzle-orm";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { type RunningWsProxy, startWsProxy } from "../infra/wsproxy/wsproxy";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import {
  bundleEdge,
  EDGE_COMPATIBILITY_DATE,
  edgeTestSigning,
  type WorkerBundle,
} from "../test/support/edge";
import { expectProblem } from "../test/support/http";

// El segundo nivel de la cache (Cache API) es lo que comparten los isolates de un mismo colo.
// Aquí dos workers de Miniflare con el MISMO bundle del edge son dos isolates de workerd con la
// misma `caches.default`: lo que carga uno lo sirve el otro aunque la base ya no responda.
const ISSUER = "http://edge.test";

let db: TestDatabase;
let proxy: RunningWsProxy;
let bundle: WorkerBundle;
let mf: Miniflare;
let token: string;
let instances: { id: string; instanceCode: string }[];

beforeAll(async () => {
  db = await createPostgresTestDatabase();
  await seedDemo(db.handle.db);
  instances = await db.handle.db
    .select({ id: tenantInstances.id, instanceCode: tenantInstances.instanceCode })
    .from(tenantInstances)
    .where(eq(tenantInstances.status, "active"));
  if (!db.url) throw new Error("postgres url missing");
  proxy = await startWsProxy();
  const signing = await edgeTestSigning("cache-api-test", ISSUER);
  token = await signing.sign();
  bundle = bundleEdge();
  const isolate = (name: string) => ({
    name,
    modules: true,
    scriptPath: bundle.script,
    modulesRoot: bundle.dir,
    compatibilityDate: EDGE_COMPATIBILITY_DATE,
    bindings: {
      DATABASE_URL: db.url ?? "",
      NEON_WSPROXY: proxy.url,
      ...signing.env,
      AUTH_AUDIENCE: "farutech-orchestrator",
      LOG_LEVEL: "silent",
    },
  });
  mf = new Miniflare({ workers: [isolate("isolate-a"), isolate("isolate-b")], host: "127.0.0.1" });
  await mf.ready;
}, 120_000);

afterAll(async () => {
  await mf?.dispose();
  bundle?.remove();
  await proxy?.close();
  await db?.drop();
});

async function read(isolate: "isolate-a" | "isolate-b", instanceId: string) {
  // Los tipos de Miniflare describen el Fetcher de workerd; en Node es un fetch normal.
  const worker = (await mf.getWorker(isolate)) as unknown as {
    fetch(url: string, init: RequestInit): Promise<Response>;
  };
  const res = await worker.fetch(`http://edge.test/v1/entitlements?instanceId=${instanceId}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return {
    status: res.status,
    headers: res.headers,
    body: (await res.json()) as unknown,
  };
}

describe("Cache API tier inside workerd", () => {
  it("serves what another isolate loaded when the database is unreachable", async () => {
    const [loaded, neverLoaded] = instances;
    if (!loaded || !neverLoaded) throw new Error("demo needs two active instances");

    const fromOrigin = await read("isolate-a", loaded.id);
    expect(fromOrigin.status).toBe(200);
    const etag = fromOrigin.headers.get("etag");
    expect(etag).toBeTruthy();

    // Sin base para nadie: lo único que puede responder ya es la cache.
    await proxy.close();

    const fromShared = await read("isolate-b", loaded.id);
    expect(fromShared.status).toBe(200);
    expect(fromShared.headers.get("etag")).toBe(etag);
    expect(fromShared.body).toEqual(fromOrigin.body);

    // Control: una instancia que ningún isolate cargó no está en la cache y no se inventa.
    const missing = await read("isolate-b", neverLoaded.id);
    expectProblem(missing, 503, "unavailable");
  }, 60_000);
});
