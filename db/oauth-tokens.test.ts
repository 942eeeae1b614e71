import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../core/ids";
import { createApiClient } from "../test/support/clients";
import {
  createTestDatabase,
  type DatabaseKind,
  type TestDatabase,
} from "../test/support/databases";
import { clientLockedFor, recordClientAuthFailure } from "./client-auth-failures";
import { consumeRefreshToken, issueRefreshToken, revokeRefreshTokenFamily } from "./refresh-tokens";
import { clientAuthFailures, refreshTokens } from "./schema";

// Postgres real y PGlite (el modo embebido de `npm start`) ejecutan el mismo SQL.
describe.each<DatabaseKind>(["postgres", "pglite"])("OAuth tables on %s", (kind) => {
  let db: TestDatabase;
  let clientId: string;
  let otherClientId: string;
  const day = 86_400;

  beforeAll(async () => {
    db = await createTestDatabase(kind);
    clientId = (await createApiClient(db.handle.db, { kind: "admin", roles: ["platform_admin"] }))
      .id;
    otherClientId = (await createApiClient(db.handle.db, { kind: "admin", roles: ["support"] })).id;
  });
  afterAll(() => db?.drop());

  it("rotates once among concurrent uses and treats the others as reuse", async () => {
    const token = await issueRefreshToken(db.handle.db, { clientId, ttlSeconds: day });
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        db.handle.db.transaction((tx) => consumeRefreshToken(tx, token, clientId)),
      ),
    );
    expect(results.filter((r) => r.kind === "rotated")).toHaveLength(1);
    expect(results.filter((r) => r.kind === "reused")).toHaveLength(7);
  });

  it("rejects an expired token without revoking its family", async () => {
    const token = await issueRefreshToken(db.handle.db, { clientId, ttlSeconds: day });
    const first = await consumeRefreshToken(db.handle.db, token, clientId);
    if (first.kind !== "rotated") throw new Error("expected rotation");
    const familyId = first.familyId;
    const live = await issueRefreshToken(db.handle.db, { clientId, ttlSeconds: day, familyId });
    const stale = await issueRefreshToken(db.handle.db, { clientId, ttlSeconds: day, familyId });
    await db.handle.db
      .update(refreshTokens)
      .set({ expiresAt: sql`now() - interval '1 second'` })
      .where(eq(refreshTokens.tokenHash, await sha256Hex(stale)));
    expect(await consumeRefreshToken(db.handle.db, stale, clientId)).toEqual({ kind: "expired" });
    expect((await consumeRefreshToken(db.handle.db, live, clientId)).kind).toBe("rotated");
  });

  it("ignores another client's token, for use and for revocation", async () => {
    const token = await issueRefreshToken(db.handle.db, { clientId, ttlSeconds: day });
    expect(await consumeRefreshToken(db.handle.db, token, otherClientId)).toEqual({
      kind: "unknown",
    });
    expect(await revokeRefreshTokenFamily(db.handle.db, token, otherClientId)).toBe(false);
    expect(await revokeRefreshTokenFamily(db.handle.db, token, clientId)).toBe(true);
    expect((await consumeRefreshToken(db.handle.db, token, clientId)).kind).toBe("reused");
  });

  it("counts failures atomically and reopens once the window has passed", async () => {
    const id = `lockout-${kind}`;
    const policy = { maxFailures: 5, windowSeconds: 60 };
    const counts = await Promise.all(
      Array.from({ length: 5 }, () => recordClientAuthFailure(db.handle.db, id, policy)),
    );
    expect(counts.sort()).toEqual([1, 2, 3, 4, 5]);
    const retryAfter = await clientLockedFor(db.handle.db, id, policy);
    expect(retryAfter).toBeGreaterThanOrEqual(59);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(await clientLockedFor(db.handle.db, id, { ...policy, maxFailures: 6 })).toBeUndefined();

    // La ventana empezó hace más de 60 s: libre, y el siguiente fallo abre otra con 1.
    await db.handle.db
      .update(clientAuthFailures)
      .set({ windowStartedAt: sql`now() - interval '61 seconds'` })
      .where(eq(clientAuthFailures.clientId, id));
    expect(await clientLockedFor(db.handle.db, id, policy)).toBeUndefined();
    expect(await recordClientAuthFailure(db.handle.db, id, policy)).toBe(1);
  });
});
