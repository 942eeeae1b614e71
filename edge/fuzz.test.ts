import { eq } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../core/auth/keys";
import { tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { type RunningWsProxy, startWsProxy } from "../infra/wsproxy/wsproxy";
import { createApiClient } from "../test/support/clients";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { type EdgeTarget, formPost, startNodeEdge, startWorkerdEdge } from "../test/support/edge";

// Peticiones al azar (cuerpos, formularios, cabeceras, claves y consultas) contra cada ruta del
// edge, en Node y dentro de workerd: nunca un 5xx ni una traza, y cada error con la forma que su
// protocolo manda (RFC 6749 en /oauth, OFREP en /ofrep, RFC 9457 en el resto).

const OAUTH_ERRORS = new Set([
  "invalid_request",
  "invalid_client",
  "invalid_grant",
  "unauthorized_client",
  "unsupported_grant_type",
  "invalid_scope",
  "unsupported_token_type",
]);
const OFREP_ERRORS = new Set([
  "PARSE_ERROR",
  "TARGETING_KEY_MISSING",
  "INVALID_CONTEXT",
  "GENERAL",
  "FLAG_NOT_FOUND",
  "TYPE_MISMATCH",
]);

interface Fixture {
  db: TestDatabase;
  proxy: RunningWsProxy;
  instanceIds: string[];
  clients: { id: string; secret: string }[];
}

let fixture: Fixture;
const targets = new Map<string, EdgeTarget>();
const tokens: string[] = [];

beforeAll(async () => {
  const db = await createPostgresTestDatabase();
  await seedDemo(db.handle.db);
  const proxy = await startWsProxy();
  const instances = await db.handle.db.select({ id: tenantInstances.id }).from(tenantInstances);
  const [norte] = await db.handle.db
    .select()
    .from(tenantInstances)
    .where(eq(tenantInstances.instanceCode, "vet-norte"));
  if (!norte || !db.url) throw new Error("demo data missing");
  const clients = [
    await createApiClient(db.handle.db, { kind: "admin", roles: ["platform_admin"] }),
    await createApiClient(db.handle.db, {
      kind: "tenant",
      roles: ["tenant_app"],
      customerId: norte.customerId,
      instanceIds: [norte.id],
    }),
  ];
  fixture = { db, proxy, instanceIds: instances.map((i) => i.id), clients };
  const env = {
    DATABASE_URL: db.edgeUrl ?? "",
    NEON_WSPROXY: proxy.url,
    AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("edge-fuzz-1")]),
    AUTH_ISSUER: "http://edge.fuzz",
    AUTH_AUDIENCE: "farutech-orchestrator",
    // Sin bloqueo: el azar debe llegar a emitir, refrescar y revocar, no quedarse en el 429.
    AUTH_CLIENT_FAILURE_LIMIT: "1000000",
    AUTH_SOURCE_FAILURE_LIMIT: "1000000",
    LOG_LEVEL: "silent",
  };
  targets.set("node", await startNodeEdge(env, db.handle.db));
  targets.set("workerd", await startWorkerdEdge(env));
  // Tokens válidos (admin y tenant) para que el azar llegue más allá de la autenticación.
  const node = targets.get("node");
  for (const client of clients) {
    const res = await node?.fetch(
      "/oauth/token",
      formPost({
        grant_type: "client_credentials",
        client_id: client.id,
        client_secret: client.secret,
      }),
    );
    if (res?.status !== 200) throw new Error(`token request failed: ${res?.status}`);
    tokens.push(((await res.json()) as { access_token: string }).access_token);
  }
}, 120_000);

afterAll(async () => {
  for (const t of targets.values()) await t.stop();
  await fixture?.proxy.close();
  await fixture?.db.drop();
});

// NUL, binario y secuencias % rotas: lo que más fácil rompe un decodificador.
const nasty = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.string({ maxLength: 10 }).map((s) => `${s}\u0000x`),
  fc.constantFrom("%", "%zz", "%E0%A4%A", "..", "a".repeat(600), "0", "-1", "null", "[]"),
  fc.uuid(),
);
// Una cabecera solo lleva bytes visibles, espacios y obs-text (RFC 9110 §5.5): fetch rechaza el resto.
const headerText = nasty.map((s) => s.replace(/[^\x20-\x7e\x80-\xff]/g, "?"));
const instanceId = () =>
  fc.oneof(
    fc.constantFrom(...fixture.instanceIds),
    fc.constantFrom(...fixture.instanceIds).map((id) => id.toUpperCase()),
    nasty,
  );
const authorization = () =>
  fc.option(
    fc.oneof(
      { arbitrary: fc.constantFrom(...tokens).map((t) => `Bearer ${t}`), weight: 4 },
      headerText.map((s) => `Bearer ${s}`),
      fc.constantFrom(
        "Bearer",
        "Bearer ",
        "bearer a.b.c",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Basic Og==",
      ),
      headerText,
    ),
    { nil: undefined },
  );
const basic = () =>
  fc.oneof(
    fc.constantFrom(...fixture.clients).map((c) => `Basic ${btoa(`${c.id}:${c.secret}`)}`),
    fc.constantFrom(...fixture.clients).map((c) => `Basic ${btoa(`${c.id}:wrong`)}`),
    headerText.map((s) => `Basic ${s}`),
    fc
      .string({ unit: "binary", maxLength: 20 })
      .map((s) => `Basic ${Buffer.from(s).toString("base64")}`),
    fc.constantFrom("Basic %zz:%zz", `Basic ${btoa("%zz:%E0%A4%A")}`, `Basic ${btoa("no-colon")}`),
  );

/** Un formulario OAuth al azar: campos conocidos (a veces repetidos) con valores malos o buenos. */
const oauthForm = () =>
  fc.oneof(
    // Casi bien formado: llega a la autenticación del cliente y a la emisión.
    fc
      .record(
        {
          grant_type: fc.constantFrom("client_credentials", "refresh_token", "password"),
          client_id: fc.oneof(
            fc.constantFrom(...fixture.clients).map((c) => c.id),
            nasty,
          ),
          client_secret: fc.oneof(
            fc.constantFrom(...fixture.clients).map((c) => c.secret),
            nasty,
          ),
          refresh_token: nasty,
          token: fc.oneof(fc.constantFrom(...tokens), nasty),
          token_type_hint: fc.constantFrom("access_token", "refresh_token", "other"),
        },
        { requiredKeys: [] },
      )
      .map((fields) => new URLSearchParams(fields).toString()),
    fc
      .array(
        fc.tuple(
          fc.constantFrom(
            "grant_type",
            "client_id",
            "client_secret",
            "refresh_token",
            "scope",
            "token",
            "token_type_hint",
            "x",
          ),
          fc.oneof(
            nasty,
            fc.constantFrom(
              "client_credentials",
              "refresh_token",
              "authorization_code",
              "password",
              "access_token",
            ),
            fc.constantFrom(...fixture.clients).map((c) => c.id),
            fc.constantFrom(...fixture.clients).map((c) => c.secret),
            fc.constantFrom(...tokens),
          ),
        ),
        { maxLength: 6 },
      )
      .map((pairs) => new URLSearchParams(pairs).toString()),
    nasty,
  );

const ofrepBody = () =>
  fc.oneof(
    fc.record({ context: fc.record({ targetingKey: instanceId() }) }).map((v) => JSON.stringify(v)),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc
      .record(
        {
          context: fc.oneof(
            fc.record(
              { targetingKey: fc.oneof(instanceId(), fc.jsonValue({ maxDepth: 1 })) },
              { requiredKeys: [] },
            ),
            fc.jsonValue({ maxDepth: 2 }),
          ),
        },
        { requiredKeys: [] },
      )
      .map((v) => JSON.stringify(v)),
    nasty,
    fc.constant("{"),
  );

interface Call {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

const optionalHeaders = fc.record(
  {
    "content-type": fc.constantFrom(
      "application/x-www-form-urlencoded",
      "application/x-www-form-urlencoded; charset=UTF-8",
      "application/json",
      "text/plain",
      "",
    ),
    "if-none-match": fc.oneof(headerText, fc.constantFrom("*", 'W/"x"', '"1"')),
  },
  { requiredKeys: [] },
);

const calls = (): fc.Arbitrary<Call> =>
  fc.oneof(
    fc
      .tuple(
        fc.constantFrom("/oauth/token", "/oauth/revoke"),
        oauthForm(),
        fc.option(basic(), { nil: undefined }),
        optionalHeaders,
      )
      .map(([path, body, auth, headers]) => ({
        method: "POST",
        path,
        body,
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          ...headers,
          ...(auth ? { authorization: auth } : {}),
        },
      })),
    fc
      .tuple(
        fc.oneof(
          instanceId().map((id) => `instanceId=${encodeURIComponent(id)}`),
          nasty.map((s) => `instanceId=${s}&instanceId=x`),
          nasty,
        ),
        authorization(),
        optionalHeaders,
      )
      .map(([query, auth, headers]) => ({
        method: "GET",
        path: `/v1/entitlements?${query}`,
        headers: { ...headers, ...(auth ? { authorization: auth } : {}) },
      })),
    fc
      .tuple(
        fc.option(fc.oneof(nasty, fc.constantFrom("max_users", "advanced_reports", "MAX_USERS")), {
          nil: undefined,
        }),
        ofrepBody(),
        authorization(),
        optionalHeaders,
      )
      .map(([key, body, auth, headers]) => ({
        method: "POST",
        path:
          key === undefined
            ? "/ofrep/v1/evaluate/flags"
            : `/ofrep/v1/evaluate/flags/${encodeURIComponent(key)}`,
        body,
        headers: { ...headers, ...(auth ? { authorization: auth } : {}) },
      })),
    fc
      .tuple(
        fc.constantFrom(
          "/ofrep/v1/configuration",
          "/.well-known/jwks.json",
          "/.well-known/openid-configuration",
          "/.well-known/oauth-authorization-server",
          "/healthz",
        ),
        fc.constantFrom("GET", "POST", "PUT", "DELETE"),
        authorization(),
        optionalHeaders,
      )
      .map(([path, method, auth, headers]) => ({
        method,
        path,
        headers: { ...headers, ...(auth ? { authorization: auth } : {}) },
      })),
  );

/** Lo que el protocolo de la ruta exige de una respuesta; devuelve el problema o undefined. */
async function contractViolation(call: Call, res: Response): Promise<string | undefined> {
  const text = await res.text();
  if (res.status >= 500) return `status ${res.status}: ${text.slice(0, 300)}`;
  if (/\n\s+at\s/.test(text)) return "stack trace in the body";
  if (res.status < 400) return undefined;
  const contentType = res.headers.get("content-type") ?? "";
  // La ruta tal como la resuelve el router ("flags/.." es "/ofrep/v1/evaluate/"); una que no
  // existe responde el 404 problem+json de cualquier ruta desconocida.
  const path = new URL(call.path, "http://edge").pathname;
  const json = () => {
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  };
  if (path.startsWith("/oauth/") && call.method === "POST") {
    const body = json();
    if (!body || !OAUTH_ERRORS.has(String(body.error))) return `not an RFC 6749 error: ${text}`;
    if (!res.headers.get("cache-control")?.includes("no-store")) return "OAuth error not no-store";
    return undefined;
  }
  if (/^\/ofrep\/v1\/evaluate\/flags(\/[^/]+)?$/.test(path) && call.method === "POST") {
    if (res.status === 401 || res.status === 403) {
      return text === "" ? undefined : `OFREP ${res.status} with a body: ${text}`;
    }
    const body = json();
    if (!body || !OFREP_ERRORS.has(String(body.errorCode))) return `not an OFREP error: ${text}`;
    return undefined;
  }
  if (path === "/ofrep/v1/configuration" && res.status === 401 && call.method === "GET") {
    return text === "" ? undefined : `OFREP 401 with a body: ${text}`;
  }
  if (!contentType.startsWith("application/problem+json")) {
    return `${res.status} is not problem+json (${contentType}): ${text.slice(0, 200)}`;
  }
  const body = json();
  if (body?.status !== res.status || typeof body.title !== "string") {
    return `problem+json without matching status and title: ${text}`;
  }
  return undefined;
}

describe.each([
  ["node", 800],
  ["workerd", 300],
])("edge fuzzing on %s", (runtime, numRuns) => {
  it("answers every random request without a 5xx, in its protocol's error shape", async () => {
    const target = targets.get(runtime);
    if (!target) throw new Error(`no ${runtime} target`);
    const seen = new Set<number>();
    await fc.assert(
      fc.asyncProperty(calls(), async (call) => {
        const res = await target.fetch(call.path, {
          method: call.method,
          headers: call.headers,
          body: call.body,
        });
        seen.add(res.status);
        const violation = await contractViolation(call, res);
        expect(violation, `${call.method} ${call.path}`).toBeUndefined();
      }),
      { numRuns },
    );
    // El azar llegó a respuestas buenas y a errores, no solo a 401.
    expect(seen.has(200)).toBe(true);
    expect([...seen].some((s) => s >= 400 && s !== 401)).toBe(true);
  }, 180_000);
});
