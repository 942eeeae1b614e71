import { type ChildProcess, spawn } from "node:child_process";
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

  beforeAll(async () => {
    const port = await getPort();
    url = `nats://127.0.0.1:${port}`;
    server = spawn(findNatsServer(), ["-a", "127.0.0.1", "-p", String(port), "--auth", "s3cret"], {
      stdio: "ignore",
    });
    await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${port}`).catch((err: unknown) => err);
      // nats-server habla su protocolo, no HTTP: basta con que el puerto acepte conexiones.
      return res instanceof Error && /ECONNREFUSED/.test(String(res.cause)) ? undefined : true;
    });
  });

  afterAll(() => {
    server?.kill("SIGTERM");
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

  it("maps NATS_USER and NATS_PASSWORD to user and pass", () => {
    expect(natsAuthFrom(parseEnv(natsAuthEnv, { NATS_USER: "u", NATS_PASSWORD: "p" }))).toEqual({
      user: "u",
      pass: "p",
    });
    expect(natsAuthFrom(parseEnv(natsAuthEnv, { NATS_USER: "", NATS_TOKEN: "" }))).toEqual({});
  });
});
