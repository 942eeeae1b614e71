import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import getPort from "get-port";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus } from "../../core/bus";
import { natsAuthEnv, natsAuthFrom, parseEnv } from "../../core/config";
import { findNatsServer } from "../../infra/nats/local-server";
import { waitFor } from "../support/stack";

// Credenciales de NATS (secreto de SST / Secret de Kubernetes): un nats-server propio que exige
// token, y la misma configuración por entorno que usan funciones y workers.
describe("NATS credentials from the environment", () => {
  let server: ChildProcess | undefined;
  let url = "";
  let storeDir = "";

  beforeAll(async () => {
    const port = await getPort();
    url = `nats://127.0.0.1:${port}`;
    storeDir = mkdtempSync(join(tmpdir(), "nats-auth-"));
    server = spawn(
      findNatsServer(),
      ["-a", "127.0.0.1", "-p", String(port), "--auth", "s3cret", "-js", "-sd", storeDir],
      { stdio: "ignore" },
    );
    await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${port}`).catch((err: unknown) => err);
      // nats-server habla su protocolo, no HTTP: basta con que el puerto acepte conexiones.
      return res instanceof Error && /ECONNREFUSED/.test(String(res.cause)) ? undefined : true;
    });
  });

  afterAll(() => {
    server?.kill("SIGTERM");
    if (storeDir) rmSync(storeDir, { recursive: true, force: true });
  });

  it("connects with NATS_TOKEN and is refused without it", async () => {
    const auth = natsAuthFrom(parseEnv(natsAuthEnv, { NATS_TOKEN: "s3cret" }));
    const bus = await connectBus({ servers: url, name: "auth-test", ...auth });
    expect(bus.isConnected()).toBe(true);
    await bus.close();
    await expect(
      connectBus({ servers: url, name: "auth-test", ...natsAuthFrom(parseEnv(natsAuthEnv, {})) }),
    ).rejects.toThrow();
  });

  it("the operator CLIs use the same credentials (publish:test against a broker that requires them)", async () => {
    const run = (extra: Record<string, string>) =>
      new Promise<{ code: number | null; err: string }>((resolve) => {
        const child = spawn(
          process.execPath,
          ["--import", "tsx", "scripts/publish-test.ts", "--type", "billing", "--count", "1"],
          { env: { ...process.env, NATS_URL: url, LOG_LEVEL: "silent", ...extra } },
        );
        let err = "";
        child.stderr?.on("data", (d: Buffer) => {
          err += d.toString();
        });
        child.once("exit", (code) => resolve({ code, err }));
      });
    expect(await run({ NATS_TOKEN: "s3cret" })).toMatchObject({ code: 0 });
    const refused = await run({});
    expect(refused.code).toBe(1);
    expect(refused.err).toContain("publish:test failed:");
  }, 60_000);

  it("maps NATS_USER and NATS_PASSWORD to user and pass", () => {
    expect(natsAuthFrom(parseEnv(natsAuthEnv, { NATS_USER: "u", NATS_PASSWORD: "p" }))).toEqual({
      user: "u",
      pass: "p",
    });
    expect(natsAuthFrom(parseEnv(natsAuthEnv, { NATS_USER: "", NATS_TOKEN: "" }))).toEqual({});
  });
});
