import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
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
    const env = {
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

    const tokenRes = await fetch(`${creds.edgeUrl}/oauth/token`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${btoa(`${creds.admin.clientId}:${creds.admin.clientSecret}`)}`,
      },
      body: "grant_type=client_credentials",
    });
    expect(tokenRes.status).toBe(200);
    const auth = {
      authorization: `Bearer ${((await tokenRes.json()) as { access_token: string }).access_token}`,
    };
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
    const { tenantInstanceId } = (await accepted.json()) as { tenantInstanceId: string };
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
