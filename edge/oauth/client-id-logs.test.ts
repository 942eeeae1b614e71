import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../core/auth/keys";
import { randomToken } from "../../core/ids";
import { createApiClient } from "../../test/support/clients";
import { createPgliteTestDatabase, type TestDatabase } from "../../test/support/databases";
import { formPost } from "../../test/support/edge";
import { captureLogs } from "../../test/support/logs";
import { createNodeEdgeApp } from "../node";

// Un client_id que no existe puede ser el secreto (Basic con el orden cambiado, campo equivocado):
// no se escribe en los logs. Uno que existe sí, para que operaciones siga a ese cliente.
describe("client ids in the token endpoint's logs", () => {
  let db: TestDatabase;
  let app: Awaited<ReturnType<typeof createNodeEdgeApp>>;
  const { logger, lines } = captureLogs("edge-client-id-logs");

  beforeAll(async () => {
    db = await createPgliteTestDatabase();
    app = await createNodeEdgeApp(
      {
        AUTH_SIGNING_KEYS: JSON.stringify([await generateSigningKey("client-id-logs")]),
        AUTH_ISSUER: "http://edge.test",
        AUTH_AUDIENCE: "farutech-orchestrator",
        AUTH_SOURCE_FAILURE_LIMIT: "2",
        AUTH_CLIENT_FAILURE_LIMIT: "2",
        LOG_LEVEL: "info",
      },
      db.handle.db,
      logger,
    );
  });
  afterAll(async () => db?.drop());

  const token = (clientId: string, secret: string) =>
    app.request(
      "/oauth/token",
      formPost({ grant_type: "client_credentials", client_id: clientId, client_secret: secret }),
    );

  it("never logs an unknown client id, neither on a failure nor on a lockout", async () => {
    const { id, secret } = await createApiClient(db.handle.db, { kind: "admin", roles: [] });
    // El secreto enviado como client_id (y el client_id como secreto).
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await token(secret, id)).status);
    expect(statuses).toEqual([401, 401, 429]);
    const text = JSON.stringify(lines);
    expect(text).toContain("client authentication failed");
    expect(text).toContain("client authentication locked out");
    expect(text).not.toContain(secret);
    // Se puede seguir la ráfaga: la misma huella en cada línea, que no revela el valor.
    const fingerprints = lines
      .filter((l) => String(l.msg).startsWith("client authentication"))
      .map((l) => l.unknownClientId);
    expect(new Set(fingerprints).size).toBe(1);
    expect(fingerprints[0]).toMatch(/^[0-9a-f]{12}$/);
  });

  it("logs a known client's id when its secret is wrong", async () => {
    const { id } = await createApiClient(db.handle.db, { kind: "admin", roles: [] });
    lines.length = 0;
    expect((await token(id, `wrong-${randomToken(8)}`)).status).toBe(401);
    expect(lines.find((l) => l.msg === "client authentication failed")).toMatchObject({
      clientId: id,
      knownClient: true,
    });
  });
});
