import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomToken } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { hashSecret } from "../../core/secret-hash";
import { apiClients } from "../../db/schema";
import { createApiClient } from "../../test/support/clients";
import { createPgliteTestDatabase, type TestDatabase } from "../../test/support/databases";
import { authenticateClient, clientAuthSource, UNKNOWN_SOURCE } from "./client-auth";
import { OAuthFailure } from "./errors";

describe("clientAuthSource", () => {
  it("keys IPv4 by address and IPv6 by its /64", () => {
    expect(clientAuthSource(" 203.0.113.7 ")).toBe("203.0.113.7");
    expect(clientAuthSource("2001:DB8:77:1::5")).toBe("2001:db8:77:1::/64");
    expect(clientAuthSource("2001:0db8:0077:0001:ffff:1:2:3")).toBe("2001:db8:77:1::/64");
    expect(clientAuthSource("::1")).toBe("0:0:0:0::/64");
    expect(clientAuthSource("2001:db8::")).toBe("2001:db8:0:0::/64");
    expect(clientAuthSource("::ffff:203.0.113.7")).toBe("203.0.113.7");
  });

  it("puts a missing or malformed header in the shared unknown bucket", () => {
    for (const header of [
      undefined,
      "",
      "not-an-ip",
      "256.1.1.1",
      "1.2.3",
      "2001:db8::1::2",
      "1:2:3:4:5:6:7:8:9",
      "fe80::1%eth0",
      "::ffff:203.0.113",
    ]) {
      expect(clientAuthSource(header), String(header)).toBe(UNKNOWN_SOURCE);
    }
  });
});

// El recuerdo de secretos verificados no sobrevive a un cambio de secreto, ni siquiera si el
// cambio llega mientras otro intento con el secreto viejo está comprobándose (PGlite: la lectura
// del hash nuevo entra mientras el PBKDF2 del viejo sigue en el pool de hilos).
describe("authenticateClient after the client's secret changes", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createPgliteTestDatabase();
  });
  afterAll(async () => db?.drop());

  const settings = {
    refreshTokenTtlSeconds: 86_400,
    maxClientAuthFailures: 5,
    clientAuthFailureWindowSeconds: 60,
    maxSourceAuthFailures: 100,
  };
  const outcome = (credentials: { id: string; secret: string }, source: string) =>
    authenticateClient(db.handle.db, credentials, source, settings, silentLogger).then(
      () => 200,
      (err: unknown) => (err instanceof OAuthFailure ? err.status : String(err)),
    );

  it("rejects the old secret after a change made while it was being checked", async () => {
    const client = await createApiClient(db.handle.db, {
      kind: "admin",
      roles: ["platform_admin"],
    });
    const during = outcome(client, "198.51.100.1");
    await new Promise((r) => setTimeout(r, 5));
    const fresh = randomToken(24);
    await db.handle.db
      .update(apiClients)
      .set({ secretHash: await hashSecret(fresh) })
      .where(eq(apiClients.clientId, client.id));
    const joined = outcome(client, "198.51.100.2");
    await during;
    expect(await joined).toBe(401);
    expect(await outcome(client, "198.51.100.3")).toBe(401);
    expect(await outcome({ id: client.id, secret: fresh }, "198.51.100.4")).toBe(200);
  });
});
