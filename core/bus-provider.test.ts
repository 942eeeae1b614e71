import type { ChildProcess } from "node:child_process";
import getPort from "get-port";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findNatsServer } from "../infra/nats/local-server";
import { createBusProvider } from "./bus-provider";
import { spawnTiedToParent } from "./child";
import { silentLogger } from "./logger";

// Un nats-server sin JetStream: NATS contesta pero crear los streams falla (lo mismo que con
// JetStream recuperando su store o un usuario sin permiso sobre los streams).
describe("bus provider when the streams cannot be set up", () => {
  let server: ChildProcess;
  let url: string;
  let monitor: string;

  beforeAll(async () => {
    const port = await getPort({ host: "127.0.0.1" });
    const monitorPort = await getPort({ host: "127.0.0.1" });
    url = `nats://127.0.0.1:${port}`;
    monitor = `http://127.0.0.1:${monitorPort}`;
    const args = ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort)];
    server = spawnTiedToParent(findNatsServer(), args, { stdio: "ignore" }, "SIGKILL");
    for (
      let i = 0;
      !(await fetch(`${monitor}/varz`).then(
        (r) => r.ok,
        () => false,
      ));
      i++
    ) {
      if (i > 100) throw new Error("nats-server did not start");
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  afterAll(() => {
    server?.kill("SIGKILL");
  });

  const connections = async () =>
    ((await (await fetch(`${monitor}/connz`)).json()) as { num_connections: number })
      .num_connections;

  it("closes the connection of each failed attempt instead of leaking it", async () => {
    const provider = createBusProvider(
      { servers: url, name: "bus-provider-test", ensureStreams: true },
      silentLogger,
    );
    for (let attempt = 0; attempt < 3; attempt++) {
      expect(await provider.get()).toBeUndefined();
      expect(provider.failure()).toBe("answered but its JetStream streams could not be set up");
      // El proveedor no reintenta antes de un segundo.
      await new Promise((r) => setTimeout(r, 1_050));
    }
    expect(await connections()).toBe(0);
    await provider.close();
  });
});
