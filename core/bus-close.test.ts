import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsForTest, type TestNats } from "../test/support/stack";
import { startTcpProxy, type TcpProxy } from "../test/support/tcp-proxy";
import { BUS_CLOSE_DRAIN_MS, connectBus } from "./bus";

// Un enlace a NATS que enmudece (partición sin RST): el apagado de un proceso no puede quedarse
// esperando el drain para siempre (SIGTERM nunca saldría y la base no se cerraría).
describe("closing the bus over a mute link", () => {
  let nats: TestNats;
  let proxy: TcpProxy;

  beforeAll(async () => {
    nats = await startNatsForTest();
    proxy = await startTcpProxy(nats.port);
  });
  afterAll(async () => {
    await proxy?.close();
    await nats?.dispose();
  });

  it("gives up draining after its deadline and closes the connection", async () => {
    const bus = await connectBus({ servers: `nats://127.0.0.1:${proxy.port}`, name: "mute-close" });
    await bus.nc.flush();
    proxy.hold();
    const started = Date.now();
    const outcome = await Promise.race([
      bus.close().then(() => "closed"),
      new Promise((resolve) =>
        setTimeout(() => resolve("still closing"), BUS_CLOSE_DRAIN_MS + 5_000),
      ),
    ]);
    expect(outcome).toBe("closed");
    expect(Date.now() - started).toBeGreaterThanOrEqual(BUS_CLOSE_DRAIN_MS - 100);
    expect(bus.nc.isClosed()).toBe(true);
  }, 30_000);
});
