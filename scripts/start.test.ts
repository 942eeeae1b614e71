import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import getPort from "get-port";
import { afterAll, describe, expect, it } from "vitest";
import { findNatsServer, NatsServerMissingError } from "../infra/nats/local-server";
import { waitFor } from "../test/support/stack";

interface Credentials {
  adminUrl: string;
  edgeUrl: string;
  admin: { clientId: string; clientSecret: string };
}

/** Cabecera Authorization con un token de la credencial admin que `npm start` dejó en la carpeta. */
async function adminAuth(creds: Credentials): Promise<{ authorization: string }> {
  const res = await fetch(`${creds.edgeUrl}/oauth/token`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `Basic ${btoa(`${creds.admin.clientId}:${creds.admin.clientSecret}`)}`,
    },
    body: "grant_type=client_credentials",
  });
  expect(res.status).toBe(200);
  return {
    authorization: `Bearer ${((await res.json()) as { access_token: string }).access_token}`,
  };
}

// `npm start` de verdad: PGlite, nats-server propio, las tres piezas y Ctrl-C.
/** Un `npm start` que debe negarse a arrancar: su código y su stderr. */
async function startOnce(env: NodeJS.ProcessEnv): Promise<{ code: number | null; err: string }> {
  const proc = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], { env });
  let err = "";
  proc.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => proc.once("exit", resolve));
  return { code, err };
}

describe("npm start (embedded mode)", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "farutech-start-"));
  let child: ChildProcess | undefined;
  let output = "";
  let env: NodeJS.ProcessEnv = {};
  let tenantInstanceId = "";

  afterAll(() => {
    child?.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("starts everything, provisions a Standard tenant end to end and stops cleanly on SIGINT", {
    timeout: 90_000,
  }, async () => {
    const adminPort = await getPort();
    const edgePort = await getPort();
    const { DATABASE_URL: _db, NATS_URL: _nats, NATS_WS_URL: _ws, ...inherited } = process.env;
    env = {
      ...inherited,
      FARUTECH_DATA_DIR: dataDir,
      ADMIN_PORT: String(adminPort),
      EDGE_PORT: String(edgePort),
      LOG_LEVEL: "warn",
    };
    child = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr?.on("data", (d: Buffer) => {
      output += d.toString();
    });
    const credentialsPath = join(dataDir, "dev-credentials.json");
    await waitFor(async () => (output.includes("Ctrl-C") ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    expect(existsSync(join(dataDir, "pglite"))).toBe(true);
    const creds = JSON.parse(readFileSync(credentialsPath, "utf8")) as Credentials;
    expect(creds.adminUrl).toBe(`http://127.0.0.1:${adminPort}`);

    const auth = await adminAuth(creds);
    const get = async <T>(url: string) => (await (await fetch(url, { headers: auth })).json()) as T;
    const customers = await get<{ items: { id: string }[] }>(
      `${creds.adminUrl}/api/customers?country=CO`,
    );
    const products = await get<{ items: { id: string; code: string }[] }>(
      `${creds.adminUrl}/api/products`,
    );
    const vet = products.items.find((p) => p.code === "FARUTECH_VET");
    const plans = await get<{ items: { id: string; code: string }[] }>(
      `${creds.adminUrl}/api/plans?productId=${vet?.id}`,
    );
    const plan = plans.items.find((p) => p.code === "VET_STARTER");
    const accepted = await fetch(`${creds.adminUrl}/api/provisioning/provision`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({
        customerId: customers.items[0]?.id,
        productId: vet?.id,
        planId: plan?.id,
        instanceCode: "start-test",
        databaseTier: "standard",
        customFeatures: { STOCK_ALERTS: true },
      }),
    });
    expect(accepted.status).toBe(202);
    ({ tenantInstanceId } = (await accepted.json()) as { tenantInstanceId: string });
    const entitlements = await waitFor(async () => {
      const e = await get<{ status: string; features: Record<string, boolean> }>(
        `${creds.edgeUrl}/v1/entitlements?instanceId=${tenantInstanceId}`,
      );
      return e.status === "active" ? e : undefined;
    });
    expect(entitlements.features).toMatchObject({
      STOCK_ALERTS: true,
      DIGITAL_RECORDS: true,
      BATCH_CONTROL: false,
    });

    // La carpeta es de un solo proceso y de un solo usuario: un segundo `npm start` sobre ella se
    // niega (antes arrancaba otro nats-server y otra PGlite sobre los mismos archivos).
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, "pglite")).mode & 0o777).toBe(0o700);
    const second = await startOnce({
      ...env,
      ADMIN_PORT: String(await getPort()),
      EDGE_PORT: String(await getPort()),
    });
    expect(second.code).toBe(1);
    expect(second.err).toContain(`is in use by process ${child.pid}`);
    expect(second.err).not.toMatch(/\n\s+at /);

    const proc = child;
    const exitCode = await new Promise<number | null>((resolve) => {
      proc.once("exit", (code) => resolve(code));
      proc.kill("SIGINT");
    });
    expect(exitCode).toBe(0);
    child = undefined;
  });

  it("starts again on the same folder with its data, and a second Ctrl-C exits at once while the drain waits", {
    timeout: 90_000,
  }, async () => {
    expect(tenantInstanceId).not.toBe("");
    let log = "";
    const proc = spawn(process.execPath, ["--import", "tsx", "scripts/start.ts"], {
      env: { ...env, LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    proc.stdout?.on("data", (d: Buffer) => {
      log += d.toString();
    });
    proc.stderr?.on("data", (d: Buffer) => {
      log += d.toString();
    });
    await waitFor(async () => (log.includes("Ctrl-C") ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 200,
    });
    // El candado del primer arranque se soltó al salir y los datos siguen: el tenant de antes.
    const creds = JSON.parse(
      readFileSync(join(dataDir, "dev-credentials.json"), "utf8"),
    ) as Credentials;
    const instance = await fetch(`${creds.adminUrl}/api/tenant-instances/${tenantInstanceId}`, {
      headers: await adminAuth(creds),
    });
    expect(instance.status).toBe(200);
    expect(((await instance.json()) as { status: string }).status).toBe("active");

    // Una petición a medio subir retiene el drenaje: el servidor espera su cuerpo.
    const edgePort = Number(new URL(creds.edgeUrl).port);
    const slow = connect(edgePort, "127.0.0.1");
    await new Promise<void>((resolve) => slow.once("connect", () => resolve()));
    slow.write(
      "POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type",
    );
    const exited = new Promise<number | null>((resolve) =>
      proc.once("exit", (code) => resolve(code)),
    );
    try {
      await new Promise((r) => setTimeout(r, 300));
      proc.kill("SIGINT");
      await waitFor(async () => (log.includes('"stopping"') ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 50,
      });
      await new Promise((r) => setTimeout(r, 500));
      expect(proc.exitCode).toBeNull();
      proc.kill("SIGINT");
      expect(await exited).toBe(130);
    } finally {
      slow.destroy();
    }
    child = undefined;
    expect(log).toContain("forced exit before the drain finished");
    // Cada línea es JSON con claves únicas (jq y los agregadores se quedan con una sola).
    const lines = log.split("\n").filter((l) => l.startsWith("{"));
    expect(lines.some((l) => l.includes('"component":"maintenance"'))).toBe(true);
    expect(lines.filter((l) => /("component":).*\1/.test(l))).toEqual([]);
    // Salir a la fuerza también suelta el candado: un tercer arranque no encuentra la carpeta ocupada.
    expect(existsSync(join(dataDir, "farutech.lock"))).toBe(false);
  });
});

describe("nats-server discovery", () => {
  it("explains how to install nats-server when it is missing", () => {
    expect(() => findNatsServer("/nonexistent/nats-server")).toThrow(NatsServerMissingError);
    expect(() => findNatsServer("/nonexistent/nats-server")).toThrow(/apt-get install nats-server/);
  });
});

describe("npm start configuration", () => {
  it.each([
    ["ADMIN_PORT", { ADMIN_PORT: "abc", LOG_LEVEL: "silent" }],
    ["LOG_LEVEL", { LOG_LEVEL: "verbose" }],
  ])(
    "refuses an invalid %s with a message naming it, without a stack trace",
    async (name, env) => {
      const { code, err } = await startOnce({ ...process.env, ...env });
      expect(code).toBe(1);
      expect(err).toContain(name);
      expect(err).not.toMatch(/\n\s+at /);
    },
    30_000,
  );
});
