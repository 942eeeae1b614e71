import { eq } from "drizzle-orm";
import { decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, type PrivateJwk } from "../core/auth/keys";
import { tenantInstances } from "../db/schema";
import { seedDemo } from "../db/seed";
import { createApiClient } from "../test/support/clients";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { type EdgeTarget, formPost, startNodeEdge } from "../test/support/edge";

// Rotación de claves sin corte (docs/rotacion-de-claves.md): cada etapa es un despliegue con
// otra lista AUTH_SIGNING_KEYS; la primera firma y todas se publican y verifican.
describe("signing key rotation", () => {
  let db: TestDatabase;
  let client: { id: string; secret: string };
  let instanceId: string;
  let oldKey: PrivateJwk;
  let newKey: PrivateJwk;

  const edgeWith = (keys: PrivateJwk[]) =>
    startNodeEdge(
      {
        AUTH_SIGNING_KEYS: JSON.stringify(keys),
        AUTH_ISSUER: "http://edge.test",
        LOG_LEVEL: "silent",
      },
      db.handle.db,
    );
  const tokenFrom = async (edge: EdgeTarget) => {
    const res = await edge.fetch(
      "/oauth/token",
      formPost({
        grant_type: "client_credentials",
        client_id: client.id,
        client_secret: client.secret,
      }),
    );
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string }).access_token;
  };
  const statusOn = async (edge: EdgeTarget, token: string) =>
    (
      await edge.fetch(`/v1/entitlements?instanceId=${instanceId}`, {
        headers: { authorization: `Bearer ${token}` },
      })
    ).status;
  const publishedKids = async (edge: EdgeTarget) =>
    (
      (await (await edge.fetch("/.well-known/jwks.json")).json()) as { keys: { kid: string }[] }
    ).keys.map((k) => k.kid);

  beforeAll(async () => {
    db = await createPostgresTestDatabase();
    await seedDemo(db.handle.db);
    const [norte] = await db.handle.db
      .select()
      .from(tenantInstances)
      .where(eq(tenantInstances.instanceCode, "vet-norte"));
    if (!norte) throw new Error("demo data missing");
    instanceId = norte.id;
    client = await createApiClient(db.handle.db, {
      kind: "tenant",
      roles: ["tenant_app"],
      customerId: norte.customerId,
      instanceIds: [norte.id],
    });
    oldKey = await generateSigningKey("key-old");
    newKey = await generateSigningKey("key-new");
  });
  afterAll(() => db?.drop());

  it("keeps old tokens valid while both keys are listed and rejects them once the old key is gone", async () => {
    const before = await edgeWith([oldKey]);
    const oldToken = await tokenFrom(before);
    expect(decodeProtectedHeader(oldToken).kid).toBe("key-old");

    // 1. La nueva se publica al final: aún firma la vieja, pero ya se verifica con la nueva.
    const published = await edgeWith([oldKey, newKey]);
    expect(await publishedKids(published)).toEqual(["key-old", "key-new"]);
    expect(decodeProtectedHeader(await tokenFrom(published)).kid).toBe("key-old");

    // 2. La nueva pasa a ser la primera: firma ella y los tokens viejos siguen valiendo.
    const rotated = await edgeWith([newKey, oldKey]);
    const newToken = await tokenFrom(rotated);
    expect(decodeProtectedHeader(newToken).kid).toBe("key-new");
    expect(await statusOn(rotated, oldToken)).toBe(200);
    expect(await statusOn(rotated, newToken)).toBe(200);
    // Un isolate que aún corre la etapa 1 también acepta los tokens nuevos.
    expect(await statusOn(published, newToken)).toBe(200);
    // Sin la etapa 1, un isolate con solo la clave vieja los rechazaría.
    expect(await statusOn(before, newToken)).toBe(401);

    // 3. Pasado el TTL de los access tokens, se retira la vieja: sus tokens ya no valen.
    const after = await edgeWith([newKey]);
    expect(await publishedKids(after)).toEqual(["key-new"]);
    expect(await statusOn(after, oldToken)).toBe(401);
    expect(await statusOn(after, newToken)).toBe(200);
  });
});
