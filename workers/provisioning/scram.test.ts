import { createConnection, createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomToken } from "../../core/ids";
import { scramSha256Verifier } from "../../db/scram";
import { createTestDatabase, type TestDatabase } from "../../test/support/databases";
import { scramLogin, storedRoleVerifier } from "../../test/support/scram";
import {
  createPostgresDedicated,
  dedicatedName,
  ENTERPRISE_ROLE_CONNECTION_LIMIT,
} from "./dedicated-databases";

describe("SCRAM-SHA-256 verifier", () => {
  it("lets pg's SCRAM client in with the password and nobody else", async () => {
    const verifier = scramSha256Verifier("s3cret-Token_x");
    expect(verifier).toMatch(
      /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/,
    );
    expect(await scramLogin(verifier, "s3cret-Token_x")).toBe(true);
    expect(await scramLogin(verifier, "s3cret-Token_y")).toBe(false);
    // Sal aleatoria: la misma contraseña no da el mismo verificador.
    expect(scramSha256Verifier("s3cret-Token_x")).not.toBe(verifier);
  });

  it("refuses passwords SASLprep would change instead of storing a wrong verifier", () => {
    expect(() => scramSha256Verifier("contraseña")).toThrow(/printable ASCII/);
    expect(() => scramSha256Verifier("")).toThrow(/printable ASCII/);
  });
});

/** Proxy TCP hacia Postgres que guarda lo que el cliente envía (el SQL va en claro sin TLS). */
async function recordingProxy(
  target: URL,
): Promise<{ url: URL; sent: () => string; server: Server }> {
  const chunks: Buffer[] = [];
  const server = createServer((client) => {
    const upstream = createConnection(Number(target.port || 5432), target.hostname);
    client.on("data", (chunk: Buffer) => chunks.push(chunk));
    client.pipe(upstream).pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("proxy has no port");
  const url = new URL(target);
  url.host = `127.0.0.1:${address.port}`;
  return { url, sent: () => Buffer.concat(chunks).toString("latin1"), server };
}

// Tier Enterprise en Postgres real: el rol guarda el verificador, la contraseña de la cadena de
// conexión es la que lo satisface (también tras un reintento o una rotación) y nunca viaja en el SQL.
describe("Enterprise role password", () => {
  let db: TestDatabase;
  const code = `scram-${process.pid}${Date.now().toString(36)}`;
  let dedicated: ReturnType<typeof createPostgresDedicated>;
  let proxy: Awaited<ReturnType<typeof recordingProxy>>;

  beforeAll(async () => {
    db = await createTestDatabase("postgres");
    proxy = await recordingProxy(new URL(db.url ?? ""));
    dedicated = createPostgresDedicated(proxy.url.toString());
  });
  afterAll(async () => {
    await dedicated?.drop(code).catch(() => {});
    await dedicated?.close();
    proxy?.server.close();
    await db?.drop();
  });

  const storedVerifier = () => storedRoleVerifier(db.url ?? "", dedicatedName(code));

  it("stores a SCRAM verifier that the connection string's password satisfies", async () => {
    const firstPassword = randomToken(24);
    await dedicated.create(code, firstPassword);
    const first = new URL(dedicated.connectionString(code, firstPassword));
    const firstVerifier = await storedVerifier();
    expect(decodeURIComponent(first.password)).toBe(firstPassword);
    expect(firstVerifier).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(firstVerifier).not.toContain(firstPassword);
    expect(await scramLogin(firstVerifier, firstPassword)).toBe(true);

    // Reintento con la misma contraseña (la guardada): sigue entrando.
    await dedicated.create(code, firstPassword);
    expect(await scramLogin(await storedVerifier(), firstPassword)).toBe(true);

    // Otra contraseña (rotación): la vieja ya no entra.
    const secondPassword = randomToken(24);
    await dedicated.create(code, secondPassword);
    const second = new URL(dedicated.connectionString(code, secondPassword));
    const secondVerifier = await storedVerifier();
    expect(await scramLogin(secondVerifier, secondPassword)).toBe(true);
    expect(await scramLogin(secondVerifier, firstPassword)).toBe(false);

    // Lo que llegó al servidor: las sentencias de rol con el verificador, ninguna contraseña.
    const sent = proxy.sent();
    expect(sent).toContain(
      `create role "${dedicatedName(code)}" with login connection limit ${ENTERPRISE_ROLE_CONNECTION_LIMIT} password 'SCRAM-SHA-256$`,
    );
    expect(sent).toContain(
      `alter role "${dedicatedName(code)}" with login connection limit ${ENTERPRISE_ROLE_CONNECTION_LIMIT} password 'SCRAM-SHA-256$`,
    );
    for (const url of [first, second]) {
      expect(sent).not.toContain(decodeURIComponent(url.password));
    }
  });
});
