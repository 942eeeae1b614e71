import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Hex } from "../core/ids";
import { createApiClient } from "../test/support/clients";
import {
  createTestDatabase,
  type DatabaseKind,
  type TestDatabase,
} from "../test/support/databases";
import { recordClientAuthOutcome, reserveClientAuthAttempt } from "./client-auth-failures";
import { issueRefreshToken, revokeRefreshTokenFamily, rotateRefreshToken } from "./refresh-tokens";
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
        rotateRefreshToken(db.handle.db, { token, clientId, ttlSeconds: day }),
      ),
    );
    expect(results.filter((r) => r.kind === "rotated")).toHaveLength(1);
    expect(results.filter((r) => r.kind === "reused")).toHaveLength(7);
  });

  it("rejects an expired token without revoking its family", async () => {
    const token = await issueRefreshToken(db.handle.db, { clientId, ttlSeconds: day });
    const first = await rotateRefreshToken(db.handle.db, { token, clientId, ttlSeconds: day });
    if (first.kind !== "rotated") throw new Error("expected rotation");
    const familyId = first.familyId;
    const live = await issueRefreshToken(db.handle.db, { clientId, ttlSeconds: day, familyId });
    const stale = await issueRefreshToken(db.handle.db, { clientId, ttlSeconds: day, familyId });
    await db.handle.db
      .update(refreshTokens)
      .set({ expiresAt: sql`now() - interval '1 second'` })
      .where(eq(refreshTokens.tokenHash, await sha256Hex(stale)));
    const use = (token: string) =>
      rotateRefreshToken(db.handle.db, { token, clientId, ttlSeconds: day });
    expect(await use(stale)).toEqual({ kind: "expired" });
    expect((await use(live)).kind).toBe("rotated");
  });

  it("ignores another client's token, for use and for revocation", async () => {
    const token = await issueRefreshToken(db.handle.db, { clientId, ttlSeconds: day });
    expect(
      await rotateRefreshToken(db.handle.db, { token, clientId: otherClientId, ttlSeconds: day }),
    ).toEqual({
      kind: "unknown",
    });
    expect(await revokeRefreshTokenFamily(db.handle.db, token, otherClientId)).toBe(false);
    expect(await revokeRefreshTokenFamily(db.handle.db, token, clientId)).toBe(true);
    expect(
      (await rotateRefreshToken(db.handle.db, { token, clientId, ttlSeconds: day })).kind,
    ).toBe("reused");
  });

  // Dos conexiones: PGlite tiene una sola y ahí las transacciones no se cruzan.
  it.runIf(kind === "postgres")(
    "revokes the token a concurrent rotation is issuing, on reuse and on RFC 7009 revocation",
    async () => {
      const sql_ = db.handle.db;
      const rotate = (token: string) =>
        rotateRefreshToken(sql_, { token, clientId, ttlSeconds: day });
      for (const revoke of [
        (token: string) => rotateRefreshToken(sql_, { token, clientId, ttlSeconds: day }),
        (token: string) => revokeRefreshTokenFamily(sql_, token, clientId),
      ]) {
        const first = await issueRefreshToken(sql_, { clientId, ttlSeconds: day });
        const second = await rotate(first);
        if (second.kind !== "rotated") throw new Error(`expected rotation, got ${second.kind}`);
        // La rotación de `second` se detiene 300 ms antes de insertar su sucesor: entretanto
        // llega el reuso de `first` (o su revocación), que debe alcanzar también al sucesor.
        await sql_.execute(sql`create function slow_refresh_insert() returns trigger
          language plpgsql as $$ begin perform pg_sleep(0.3); return new; end $$`);
        await sql_.execute(sql`create trigger slow_refresh_insert before insert on refresh_tokens
          for each row execute function slow_refresh_insert()`);
        try {
          const racing = rotate(second.token);
          await new Promise((resolve) => setTimeout(resolve, 100));
          await revoke(first);
          const third = await racing;
          if (third.kind !== "rotated") throw new Error(`expected rotation, got ${third.kind}`);
          await sql_.execute(sql`drop trigger slow_refresh_insert on refresh_tokens`);
          expect((await rotate(third.token)).kind).toBe("reused");
        } finally {
          await sql_.execute(sql`drop trigger if exists slow_refresh_insert on refresh_tokens`);
          await sql_.execute(sql`drop function slow_refresh_insert()`);
        }
      }
    },
  );

  it("reserves attempts atomically per client id and source, and reopens after the window", async () => {
    const key = { clientId: `lockout-${kind}`, source: "203.0.113.7" };
    const policy = { maxFailures: 5, windowSeconds: 60 };
    const reservations = await Promise.all(
      Array.from({ length: 8 }, () => reserveClientAuthAttempt(db.handle.db, key, policy)),
    );
    const granted = reservations.flatMap((r) => (r.kind === "granted" ? [r] : []));
    // Cinco huecos; los otros tres esperan a los que están en curso, no están bloqueados.
    expect(granted).toHaveLength(5);
    expect(reservations.filter((r) => r.kind === "busy")).toHaveLength(3);
    for (const r of granted)
      await recordClientAuthOutcome(db.handle.db, key, r.windowStartedAt, "failed");
    const locked = await reserveClientAuthAttempt(db.handle.db, key, policy);
    if (locked.kind !== "locked") throw new Error(`expected locked, got ${locked.kind}`);
    expect(locked.retryAfter).toBeGreaterThanOrEqual(59);
    expect(locked.retryAfter).toBeLessThanOrEqual(60);
    // Mismo client_id desde otro origen: su propio contador.
    const elsewhere = await reserveClientAuthAttempt(
      db.handle.db,
      { ...key, source: "198.51.100.9" },
      policy,
    );
    expect(elsewhere.kind).toBe("granted");

    // La ventana empezó hace más de 60 s: el siguiente intento abre otra.
    await db.handle.db
      .update(clientAuthFailures)
      .set({ windowStartedAt: sql`now() - interval '61 seconds'` })
      .where(eq(clientAuthFailures.clientId, key.clientId));
    expect((await reserveClientAuthAttempt(db.handle.db, key, policy)).kind).toBe("granted");
    const [row] = await db.handle.db
      .select()
      .from(clientAuthFailures)
      .where(
        and(
          eq(clientAuthFailures.clientId, key.clientId),
          eq(clientAuthFailures.source, key.source),
        ),
      );
    expect(row).toMatchObject({ failures: 0, pending: 1 });
  });

  it("stops counting an attempt whose process died once its lease is over, not at the window's end", async () => {
    const key = { clientId: `orphan-${kind}`, source: "203.0.113.50" };
    const policy = { maxFailures: 3, windowSeconds: 3600 };
    // Tres intentos reservados que nunca cierran (el isolate murió a mitad del hash).
    for (let i = 0; i < 3; i++) {
      expect((await reserveClientAuthAttempt(db.handle.db, key, policy)).kind).toBe("granted");
    }
    expect((await reserveClientAuthAttempt(db.handle.db, key, policy)).kind).toBe("busy");
    // Pasado el lease de los intentos en curso (no la hora de la ventana), el cubo vuelve a abrir.
    await db.handle.db
      .update(clientAuthFailures)
      .set({ pendingUntil: sql`now() - interval '1 second'` })
      .where(eq(clientAuthFailures.clientId, key.clientId));
    const again = await reserveClientAuthAttempt(db.handle.db, key, policy);
    expect(again.kind).toBe("granted");
    const [row] = await db.handle.db
      .select()
      .from(clientAuthFailures)
      .where(eq(clientAuthFailures.clientId, key.clientId));
    expect(row).toMatchObject({ failures: 0, pending: 1 });
    // Los fallos confirmados, en cambio, siguen contando hasta que vence la ventana.
    if (again.kind !== "granted") throw new Error("expected a granted attempt");
    await recordClientAuthOutcome(db.handle.db, key, again.windowStartedAt, "failed");
    for (let i = 0; i < 2; i++) {
      const r = await reserveClientAuthAttempt(db.handle.db, key, policy);
      if (r.kind !== "granted") throw new Error("expected a granted attempt");
      await recordClientAuthOutcome(db.handle.db, key, r.windowStartedAt, "failed");
    }
    await db.handle.db
      .update(clientAuthFailures)
      .set({ pendingUntil: sql`now() - interval '1 second'` })
      .where(eq(clientAuthFailures.clientId, key.clientId));
    expect((await reserveClientAuthAttempt(db.handle.db, key, policy)).kind).toBe("locked");
  });

  it("gives a successful attempt back, but not one from a window that has since closed", async () => {
    const key = { clientId: `release-${kind}`, source: "unknown" };
    const policy = { maxFailures: 2, windowSeconds: 60 };
    for (let i = 0; i < 5; i++) {
      const r = await reserveClientAuthAttempt(db.handle.db, key, policy);
      if (r.kind !== "granted") throw new Error("a released attempt must not count");
      await recordClientAuthOutcome(db.handle.db, key, r.windowStartedAt, "succeeded");
    }
    const stale = await reserveClientAuthAttempt(db.handle.db, key, policy);
    if (stale.kind !== "granted") throw new Error("expected an allowed attempt");
    await db.handle.db
      .update(clientAuthFailures)
      .set({ windowStartedAt: sql`now() - interval '61 seconds'` })
      .where(eq(clientAuthFailures.clientId, key.clientId));
    const fresh = await reserveClientAuthAttempt(db.handle.db, key, policy);
    expect(fresh.kind).toBe("granted");
    // El fallo de la ventana vieja no cuenta en la nueva, ni le quita su intento en curso.
    await recordClientAuthOutcome(db.handle.db, key, stale.windowStartedAt, "failed");
    const [row] = await db.handle.db
      .select()
      .from(clientAuthFailures)
      .where(eq(clientAuthFailures.clientId, key.clientId));
    expect(row).toMatchObject({ failures: 0, pending: 1 });
  });
});
