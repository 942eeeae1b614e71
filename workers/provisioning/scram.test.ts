import { createHash, createHmac, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { createConnection, createServer, type Server } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../test/support/databases";
import { createPostgresDedicated, dedicatedName } from "./dedicated-databases";
import { scramSha256Verifier } from "./scram";

// El cliente SCRAM de `pg` (el que usan las apps hijas para entrar con esa contraseña) es la
// implementación independiente contra la que se comprueba el verificador.
interface SaslSession {
  response: string;
  clientNonce: string;
}
const sasl = createRequire(import.meta.url)("pg/lib/crypto/sasl.js") as {
  startSession(mechanisms: string[]): SaslSession;
  continueSession(session: SaslSession, password: string, serverData: string): Promise<void>;
  finalizeSession(session: SaslSession, serverData: string): void;
};

/** Hace de servidor Postgres en un intercambio SCRAM: true si el cliente prueba la contraseña. */
async function scramLogin(verifier: string, password: string): Promise<boolean> {
  const match = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
  if (!match) throw new Error(`not a SCRAM verifier: ${verifier}`);
  const [, iterations, salt, storedKeyB64, serverKeyB64] = match;
  const storedKey = Buffer.from(storedKeyB64 ?? "", "base64");
  const session = sasl.startSession(["SCRAM-SHA-256"]);
  const nonce = session.clientNonce + randomBytes(12).toString("base64");
  const serverFirst = `r=${nonce},s=${salt},i=${iterations}`;
  await sasl.continueSession(session, password, serverFirst);
  const clientFinal = session.response;
  const proof = Buffer.from(/,p=(.+)$/.exec(clientFinal)?.[1] ?? "", "base64");
  const authMessage = `n=*,r=${session.clientNonce},${serverFirst},${clientFinal.replace(/,p=.+$/, "")}`;
  const clientSignature = createHmac("sha256", storedKey).update(authMessage).digest();
  const clientKey = Buffer.from(proof.map((b, i) => b ^ (clientSignature[i] ?? 0)));
  if (!createHash("sha256").update(clientKey).digest().equals(storedKey)) return false;
  const serverKey = Buffer.from(serverKeyB64 ?? "", "base64");
  const serverSignature = createHmac("sha256", serverKey).update(authMessage).digest("base64");
  // El cliente comprueba a su vez la firma del servidor (lanza si no coincide).
  sasl.finalizeSession(session, `v=${serverSignature}`);
  return true;
}

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
// conexión es la que lo satisface (también tras un reintento, que la rota) y nunca viaja en el SQL.
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

  const storedVerifier = async () => {
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ rolpassword: string | null }>(
        "select rolpassword from pg_authid where rolname = $1",
        [dedicatedName(code)],
      );
      return rows[0]?.rolpassword ?? "";
    } finally {
      await admin.end();
    }
  };

  it("stores a SCRAM verifier that the connection string's password satisfies", async () => {
    const first = new URL(await dedicated.create(code));
    const firstVerifier = await storedVerifier();
    expect(firstVerifier).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(firstVerifier).not.toContain(decodeURIComponent(first.password));
    expect(await scramLogin(firstVerifier, decodeURIComponent(first.password))).toBe(true);

    // Reintento del paso: contraseña nueva; la vieja ya no entra.
    const second = new URL(await dedicated.create(code));
    const secondVerifier = await storedVerifier();
    expect(second.password).not.toBe(first.password);
    expect(await scramLogin(secondVerifier, decodeURIComponent(second.password))).toBe(true);
    expect(await scramLogin(secondVerifier, decodeURIComponent(first.password))).toBe(false);

    // Lo que llegó al servidor: las sentencias de rol con el verificador, ninguna contraseña.
    const sent = proxy.sent();
    expect(sent).toContain(
      `create role "${dedicatedName(code)}" with login password 'SCRAM-SHA-256$`,
    );
    expect(sent).toContain(
      `alter role "${dedicatedName(code)}" with login password 'SCRAM-SHA-256$`,
    );
    for (const url of [first, second]) {
      expect(sent).not.toContain(decodeURIComponent(url.password));
    }
  });
});
