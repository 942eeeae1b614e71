import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { randomToken } from "../../core/ids";
import { silentLogger } from "../../core/logger";
import { hashSecret } from "../../core/secret-hash";
import { apiClients, clientAuthFailures } from "../../db/schema";
import { createApiClient } from "../../test/support/clients";
import { createPgliteTestDatabase, type TestDatabase } from "../../test/support/databases";
import type { OAuthSettings } from "../env";
import { authenticateClient, clientAuthSource, UNKNOWN_SOURCE } from "./client-auth";
import { OAuthFailure } from "./errors";

// Compuerta en verifySecret (solo en esta prueba): retiene la comprobación contra un hash dado
// hasta que la prueba la suelta. Sin ella, el PBKDF2 suele terminar antes que el UPDATE y la
// carrera no se ejercita.
const verifyGate = vi.hoisted(() => ({
  heldHash: undefined as string | undefined,
  onEnter: () => {},
  released: Promise.resolve(),
}));
vi.mock("../../core/secret-hash", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../core/secret-hash")>();
  return {
    ...real,
    async verifySecret(secret: string, stored: string): Promise<boolean> {
      if (verifyGate.heldHash !== undefined && stored === verifyGate.heldHash) {
        verifyGate.onEnter();
        await verifyGate.released;
      }
      return real.verifySecret(secret, stored);
    },
  };
});

/** Retiene las comprobaciones contra `hash`; `entered` se cumple cuando la primera llega. */
function holdVerificationsAgainst(hash: string) {
  let release = () => {};
  verifyGate.released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const entered = new Promise<void>((resolve) => {
    verifyGate.onEnter = resolve;
  });
  verifyGate.heldHash = hash;
  return {
    entered,
    release() {
      verifyGate.heldHash = undefined;
      release();
    },
  };
}

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

/** Una base PGlite por describe y el resultado de autenticar (200 o el estado del error). */
function authHarness(overrides: Partial<OAuthSettings> = {}) {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createPgliteTestDatabase();
  });
  afterAll(async () => db?.drop());
  const settings: OAuthSettings = {
    refreshTokenTtlSeconds: 86_400,
    maxClientAuthFailures: 5,
    clientAuthFailureWindowSeconds: 60,
    maxSourceAuthFailures: 100,
    maxClientAuthFailuresAllSources: 50,
    ...overrides,
  };
  return {
    db: () => db.handle.db,
    outcome: (credentials: { id: string; secret: string }, source: string) =>
      authenticateClient(db.handle.db, credentials, source, settings, silentLogger).then(
        () => 200,
        (err: unknown) => (err instanceof OAuthFailure ? err.status : String(err)),
      ),
  };
}

// El recuerdo de secretos verificados no sobrevive a un cambio de secreto, ni siquiera si el
// cambio llega mientras otro intento con el secreto viejo está comprobándose: la compuerta de
// verifySecret (arriba) retiene esa comprobación hasta que el cambio está confirmado.
describe("authenticateClient after the client's secret changes", () => {
  const { db, outcome } = authHarness();

  it("rejects the old secret after a change made while it was being checked", async () => {
    const client = await createApiClient(db(), {
      kind: "admin",
      roles: ["platform_admin"],
    });
    const [row] = await db()
      .select({ secretHash: apiClients.secretHash })
      .from(apiClients)
      .where(eq(apiClients.clientId, client.id));
    const gate = holdVerificationsAgainst(row?.secretHash ?? "");
    let duringSettled = false;
    const during = outcome(client, "198.51.100.1").finally(() => {
      duringSettled = true;
    });
    try {
      // La primera comprobación ya está en curso (compartible) contra el hash viejo.
      await gate.entered;
      const fresh = randomToken(24);
      await db()
        .update(apiClients)
        .set({ secretHash: await hashSecret(fresh) })
        .where(eq(apiClients.clientId, client.id));
      expect(duringSettled, "the first check must still be in flight after the update").toBe(false);
      // Una petición nueva con el secreto viejo se compara con el hash nuevo: no se suma a la
      // comprobación retenida (si se sumara, esperaría a la compuerta y acabaría en 200).
      let timer: ReturnType<typeof setTimeout> | undefined;
      const joined = await Promise.race([
        outcome(client, "198.51.100.2"),
        new Promise<string>((resolve) => {
          timer = setTimeout(
            () => resolve("still waiting on the check held before the change"),
            10_000,
          );
        }),
      ]);
      clearTimeout(timer);
      expect(joined).toBe(401);
      expect(duringSettled, "the race window was open: the first check is still held").toBe(false);
      gate.release();
      // La primera leyó el cliente antes del cambio, cuando su secreto era válido.
      expect(await during).toBe(200);
      // Y no deja el secreto viejo recordado como válido para el hash nuevo.
      expect(await outcome(client, "198.51.100.3")).toBe(401);
      expect(await outcome({ id: client.id, secret: fresh }, "198.51.100.4")).toBe(200);
    } finally {
      gate.release();
      await during;
    }
  });
});

// El límite por origen no frena un ataque repartido (una /48 de IPv6 son 65 536 cubos de 5): el
// client_id tiene además un tope sumando todos los orígenes, y pasado ese tope solo entran los
// orígenes con un acierto reciente (la aplicación legítima no queda fuera).
describe("authenticateClient under failures spread over many sources", () => {
  const { db, outcome } = authHarness({ maxClientAuthFailuresAllSources: 8 });

  it("locks the client id for sources without a recent success once all sources add up", async () => {
    const client = await createApiClient(db(), { kind: "admin", roles: ["support"] });
    const wrong = { id: client.id, secret: "wrong-secret" };
    const known = "198.51.100.10";
    expect(await outcome(client, known)).toBe(200);

    // Cinco fallos desde un origen (que queda bloqueado) y tres desde otro: ocho en total.
    for (let i = 0; i < 5; i++) expect(await outcome(wrong, "2001:db8:0:1::/64")).toBe(401);
    expect(await outcome(wrong, "2001:db8:0:1::/64")).toBe(429);
    for (let i = 0; i < 3; i++) expect(await outcome(wrong, "2001:db8:0:2::/64")).toBe(401);

    // Un origen nuevo ya no prueba nada, ni con el secreto correcto.
    expect(await outcome(wrong, "2001:db8:0:3::/64")).toBe(429);
    expect(await outcome(client, "2001:db8:0:4::/64")).toBe(429);
    // El origen donde el cliente ya entró sigue entrando.
    expect(await outcome(client, known)).toBe(200);
    // Un 429 de este tope no cuenta como fallo del origen (el secreto no se miró).
    const rows = await db()
      .select({ source: clientAuthFailures.source, failures: clientAuthFailures.failures })
      .from(clientAuthFailures)
      .where(eq(clientAuthFailures.clientId, client.id));
    const failuresOf = (source: string) => rows.find((r) => r.source === source)?.failures;
    expect(failuresOf("2001:db8:0:4::/64")).toBe(0);
    expect(failuresOf("*")).toBe(8);

    // Vencida la ventana, un origen nuevo vuelve a poder entrar.
    await db()
      .update(clientAuthFailures)
      .set({ windowStartedAt: new Date(Date.now() - 61_000) })
      .where(eq(clientAuthFailures.clientId, client.id));
    expect(await outcome(client, "2001:db8:0:4::/64")).toBe(200);
  });

  // Una ráfaga simultánea desde muchos orígenes: el tope se reserva antes del hash, como el de
  // cada origen, así que no se comprueban más secretos que el tope aunque lleguen todos a la vez.
  it("checks no more secrets than the ceiling when many sources try at once", async () => {
    const client = await createApiClient(db(), { kind: "admin", roles: ["support"] });
    const wrong = { id: client.id, secret: "wrong-secret" };
    const attempts = Array.from({ length: 20 }, (_, n) =>
      Array.from({ length: 5 }, () => outcome(wrong, `2001:db8:1:${n}::/64`)),
    ).flat();
    const statuses = await Promise.all(attempts);
    const checked = statuses.filter((s) => s === 401).length;
    expect(checked).toBeGreaterThan(0);
    expect(checked).toBeLessThanOrEqual(8);
    expect(statuses.filter((s) => s !== 401 && s !== 429)).toEqual([]);
    const [all] = await db()
      .select({ failures: clientAuthFailures.failures, pending: clientAuthFailures.pending })
      .from(clientAuthFailures)
      .where(and(eq(clientAuthFailures.clientId, client.id), eq(clientAuthFailures.source, "*")));
    expect(all).toEqual({ failures: checked, pending: 0 });
  });

  // Réplicas nuevas que arrancan a la vez con el secreto correcto: el tope lleno de intentos en
  // curso (no de fallos) las hace esperar su turno, no las rechaza.
  it("lets a burst of new sources with the right secret through, in turns", async () => {
    const client = await createApiClient(db(), { kind: "admin", roles: ["support"] });
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, n) => outcome(client, `203.0.113.${n + 1}`)),
    );
    expect(statuses).toEqual(Array.from({ length: 20 }, () => 200));
  });
});
